"""Two-way dialogue: an officer presses Reply, the resident reads the answer with the receipt code.

The flow (docs/answers.md): `keys` turns a receipt code into a key pair, `threads` puts the public key in the
tip's Message-ID under a MAC, `ingest` turns one officer's reply into a sealed answer, `store` keeps it where only
the code opens it, `collector` fetches replies over IMAP and `command` reads one from the MTA on standard input.
"""
