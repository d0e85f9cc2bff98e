"""agent.rules: standing queries; `engine` is the pure logic, `runner` puts one camera's rules to work."""
