"""jukinet runtime: the code deployed to AWS Lambda.

``domain`` is plain Python (no AWS imports); ``adapters`` talk to AWS through boto3;
``handlers`` are the Lambda entry points, a few lines each over the two.
"""
