"""Command-line faces that belong to no single subpackage (each module has ``register(subparsers)``)."""
