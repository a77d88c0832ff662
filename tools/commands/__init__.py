"""One module per `hark` subcommand; each defines register(subparsers)."""
