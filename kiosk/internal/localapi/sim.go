package localapi

// Sim carries the simulator's card controls.
type Sim struct{}

// simRoutes registers the simulator's control panel.
func (s *Server) simRoutes() {}
