// A long-running AWS SDK for JavaScript v3 process for the SDK tests (tests/sdk_clients.py): each line on
// stdin makes one STS call ("fresh": with a new client; "http": with the container provider alone) and
// prints the access key id it used and the caller's ARN, or the error.
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
const { fromHttp } = require("@aws-sdk/credential-provider-http");
const readline = require("readline");
const longLived = new STSClient({});
const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    // "http": the container provider alone, as the default chain uses it (the chain reports only "Could
    // not load credentials from any providers" when it fails, so the endpoint's message is read here).
    const kind = line.trim();
    const client = kind === "fresh" ? new STSClient({}) : kind === "http" ? new STSClient({ credentials: fromHttp({}) }) : longLived;
    try {
      const identity = await client.send(new GetCallerIdentityCommand({}));
      const credentials = await client.config.credentials();
      console.log(JSON.stringify({ key: credentials.accessKeyId, arn: identity.Arn }));
    } catch (error) {
      console.log(JSON.stringify({ error: `${error.message} ${error.Message || ""}` }));
    }
  });
});
