"""The only package that imports boto3: a narrow EC2 port, throttling, IMDSv2."""
