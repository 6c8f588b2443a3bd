"""The domain core of jukinet: codes, identity facts, update notices and their ordering.

Nothing in this package imports boto3 or any AWS library, so it is tested fast and
exhaustively. Rules whose official text is unconfirmed live in one named place each
(see ``docs/architecture.md``).
"""
