//go:build !unix

package safeopen

const openFlags = 0
