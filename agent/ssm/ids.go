package ssm

import "strings"

// SplitDocumentID tells a command's document id from an association's. The
// agent names a command's state file after its command id
// (agent/runcommand/utils.go: DocumentID = CommandID) and an association's
// after "<AssociationID>.<RunID>" (agent/association/parser/parser.go), with
// an empty CommandID in the file. Both ids are UUIDs, which hold no dot.
func SplitDocumentID(documentID string) (commandID, associationID string) {
	if documentID == "" {
		return "", ""
	}
	if assoc, run, ok := strings.Cut(documentID, "."); ok && assoc != "" && run != "" {
		return "", assoc
	}
	return documentID, ""
}
