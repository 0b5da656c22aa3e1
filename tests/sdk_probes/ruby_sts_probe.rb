# A long-running AWS SDK for Ruby (Debian ruby-aws-sdk-core) process for the SDK tests
# (tests/sdk_clients.py): each line on stdin makes one STS call ("fresh": with a new client) and prints
# the access key id it used and the caller's ARN, or the error.
require "aws-sdk-core"
require "json"

# This SDK release reads no AWS_ENDPOINT_URL: the probe takes the local STS from this variable.
def client
  Aws::STS::Client.new(endpoint: ENV.fetch("STSD_TEST_STS_ENDPOINT"), region: ENV.fetch("AWS_REGION", "us-east-1"))
end

$stdout.sync = true
long_lived = nil
$stdin.each_line do |line|
  begin
    long_lived ||= client
    sts = line.strip == "fresh" ? client : long_lived
    identity = sts.get_caller_identity
    puts JSON.generate({ key: sts.config.credentials.credentials.access_key_id, arn: identity.arn })
  rescue StandardError => e
    puts JSON.generate({ error: "#{e.class}: #{e.message}" })
  end
end
