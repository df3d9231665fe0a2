// Package layout holds no code: its test checks the import rules that keep the tree's one-way streets.
package layout
