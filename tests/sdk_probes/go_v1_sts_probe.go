// A long-running AWS SDK for Go (v1, Debian golang-github-aws-aws-sdk-go-dev) process for the SDK tests
// (tests/sdk_clients.py): each line on stdin makes one STS call ("fresh": with a new session) and prints
// the access key id it used and the caller's ARN, or the error.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/sts"
)

func main() {
	// Verbose chain errors: otherwise a refusal shows only as "NoCredentialProviders".
	config := aws.Config{
		Endpoint:                      aws.String(os.Getenv("STSD_TEST_STS_ENDPOINT")),
		CredentialsChainVerboseErrors: aws.Bool(true),
	}
	longLived := session.Must(session.NewSession(&config))
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		sess := longLived
		if scanner.Text() == "fresh" {
			sess = session.Must(session.NewSession(&config))
		}
		out := map[string]string{}
		if identity, err := sts.New(sess).GetCallerIdentity(&sts.GetCallerIdentityInput{}); err != nil {
			out["error"] = err.Error()
		} else if value, err := sess.Config.Credentials.Get(); err != nil {
			out["error"] = err.Error()
		} else {
			out["key"] = value.AccessKeyID
			out["arn"] = aws.StringValue(identity.Arn)
		}
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
}
