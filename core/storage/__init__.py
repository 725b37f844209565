"""Object storage behind one interface: the local filesystem (embedded default) or S3 (boto3)."""
