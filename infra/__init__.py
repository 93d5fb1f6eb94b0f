"""The Shipway Pulumi program: validated stack config in, the platform for its cloud out."""
