"""The plugin host: the hook specifications (the contract of each component kind), the
registry that collects what plugins register, and the options a component declares."""
