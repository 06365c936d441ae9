package localapi

// Integrator carries the integrator API's plug-ins.
type Integrator struct{}

// integratorRoutes registers the integrator API.
func (s *Server) integratorRoutes() {}
