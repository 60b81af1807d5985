package agentlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// StateFile is the offsets file's name inside the state directory.
const StateFile = "agentlog-offsets.json"

// fingerprintLen is how many first bytes of a file identify it besides its
// device and inode: inode numbers are reused at once after a delete, and a
// copytruncate keeps the inode, but the first line (with its timestamp)
// differs.
const fingerprintLen = 128

// offsetsState is what agentlog-offsets.json holds.
type offsetsState struct {
	Version int         `json:"version"`
	Files   []fileState `json:"files"`
	// Mark is the consumer's journal position that goes with these
	// offsets (Options.Journal); absent without a journal.
	Mark *int64 `json:"mark,omitempty"`
}

// fileState is one followed file: the current file of a configured name, a
// just-rotated one still being drained, or (Inode 0) a name whose file did
// not exist.
type fileState struct {
	Name    string `json:"name"`
	Rotated bool   `json:"rotated,omitempty"`
	Dev     uint64 `json:"dev"`
	Inode   uint64 `json:"inode"`
	// Offset is where reading resumes: the end of the last entry handed out.
	Offset int64 `json:"offset"`
	// FingerprintLen first bytes hash to Fingerprint (hex SHA-256). They
	// may reach past Offset: a log is only appended to, and a file whose
	// first bytes changed was truncated, so it is read from its start.
	FingerprintLen int    `json:"fingerprint_len"`
	Fingerprint    string `json:"fingerprint"`
}

const stateVersion = 1

// parseState decodes and checks an offsets file. Any error means the file is
// corrupt: the caller logs it and starts at the end of the current files.
func parseState(data []byte) (offsetsState, error) {
	var st offsetsState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return offsetsState{}, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return offsetsState{}, errors.New("trailing data after the JSON object")
	}
	if st.Version != stateVersion {
		return offsetsState{}, fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	if st.Mark != nil && *st.Mark < 0 {
		return offsetsState{}, fmt.Errorf("negative journal mark %d", *st.Mark)
	}
	if len(st.Files) > 1024 {
		return offsetsState{}, fmt.Errorf("%d files, more than any configuration follows", len(st.Files))
	}
	for i, f := range st.Files {
		switch {
		case f.Name == "" || strings.ContainsAny(f.Name, `/\`) || f.Name == "." || f.Name == "..":
			return offsetsState{}, fmt.Errorf("files[%d]: name %q is not a plain file name", i, f.Name)
		case f.Offset < 0:
			return offsetsState{}, fmt.Errorf("files[%d]: negative offset %d", i, f.Offset)
		case f.FingerprintLen < 0 || f.FingerprintLen > fingerprintLen:
			return offsetsState{}, fmt.Errorf("files[%d]: fingerprint_len %d out of range", i, f.FingerprintLen)
		case f.Inode == 0 && (f.Offset != 0 || f.Rotated):
			return offsetsState{}, fmt.Errorf("files[%d]: a missing file with an offset", i)
		}
		if f.FingerprintLen > 0 {
			b, err := hex.DecodeString(f.Fingerprint)
			if err != nil || len(b) != sha256.Size {
				return offsetsState{}, fmt.Errorf("files[%d]: fingerprint is not a hex SHA-256", i)
			}
		} else if f.Fingerprint != "" {
			return offsetsState{}, fmt.Errorf("files[%d]: fingerprint without a length", i)
		}
	}
	return st, nil
}

func fingerprint(prefix []byte) string {
	sum := sha256.Sum256(prefix)
	return hex.EncodeToString(sum[:])
}
