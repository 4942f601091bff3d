"""What an operator can do, whether through the CLI or the HTTP API: one function per use
case, taking its collaborators as arguments and raising the SDK's errors (never exiting).
The CLI's commands and the API's routes are thin layers over these."""
