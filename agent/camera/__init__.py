"""agent.camera: one camera as one unit (`pipeline.CameraPipeline`), what it is made of, and the registry of
every camera of the process."""
