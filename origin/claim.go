package main

import (
	"context"
	"fmt"

	"github.com/peergate/peergate/origin/media"
)

// publishAuthorizer composes the publish-key check with the cluster-wide publish claim (nil
// when publish.allow_duplicates is set): a publisher without a valid key never takes a claim,
// and one whose NAME another origin publishes is refused as a duplicate, which the RTMP and
// RTSP listeners answer like a NAME already published here (NetStream.Publish.BadName,
// 409 Conflict). Nil when neither applies (anyone may publish anything).
func publishAuthorizer(key func(name, query, client string) error, claim func(ctx context.Context, name string) error) func(name, query, client string) error {
	if claim == nil {
		return key
	}
	return func(name, query, client string) error {
		if key != nil {
			if err := key(name, query, client); err != nil {
				return err
			}
		}
		if err := claim(context.Background(), name); err != nil {
			return fmt.Errorf("%w: %w", media.ErrAlreadyPublishing, err)
		}
		return nil
	}
}
