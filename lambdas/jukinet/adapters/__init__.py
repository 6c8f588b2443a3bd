"""Data access and AWS calls: the only runtime package that imports boto3."""
