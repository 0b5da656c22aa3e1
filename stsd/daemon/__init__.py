"""The stsd daemon: the only part of stsd that imports boto3/botocore and calls STS."""
