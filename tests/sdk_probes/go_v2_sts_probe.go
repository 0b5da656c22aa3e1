// A long-running AWS SDK for Go v2 (Debian golang-github-aws-aws-sdk-go-v2-dev) process for the SDK tests
// (tests/sdk_clients.py): each line on stdin makes one STS call ("fresh": with a config loaded anew) and
// prints the access key id it used and the caller's ARN, or the error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx := context.Background()
	// This SDK release reads no AWS_ENDPOINT_URL: the probe takes the local STS from this variable.
	endpoint := os.Getenv("STSD_TEST_STS_ENDPOINT")
	longLived, longLivedErr := config.LoadDefaultConfig(ctx)
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		cfg, err := longLived, longLivedErr
		if scanner.Text() == "fresh" {
			cfg, err = config.LoadDefaultConfig(ctx)
		}
		out := map[string]string{}
		if err != nil {
			out["error"] = err.Error()
		} else {
			client := sts.NewFromConfig(cfg, func(o *sts.Options) {
				o.EndpointResolver = sts.EndpointResolverFromURL(endpoint)
			})
			if identity, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
				out["error"] = err.Error()
			} else if value, err := cfg.Credentials.Retrieve(ctx); err != nil {
				out["error"] = err.Error()
			} else {
				out["key"] = value.AccessKeyID
				out["arn"] = aws.ToString(identity.Arn)
			}
		}
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
}
