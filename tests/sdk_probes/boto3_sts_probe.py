"""A long-running boto3 process for the SDK tests (tests/sdk_clients.py): each line on stdin makes one STS
call ("fresh": with a new session) and prints the access key id it used and the caller's ARN, or the error."""

import json
import sys

import boto3

session = boto3.session.Session()
sts = session.client("sts")
for line in sys.stdin:
    try:
        client = boto3.session.Session().client("sts") if line.strip() == "fresh" else sts
        arn = client.get_caller_identity()["Arn"]
        credentials = session.get_credentials() if client is sts else client._request_signer._credentials
        print(json.dumps({"key": credentials.get_frozen_credentials().access_key, "arn": arn}), flush=True)
    except Exception as error:
        print(json.dumps({"error": str(error)}), flush=True)
