package localapi

// pageRoutes registers the touch screen and its event stream and inputs.
func (s *Server) pageRoutes() {}
