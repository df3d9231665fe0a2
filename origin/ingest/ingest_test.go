package ingest

import "testing"

func TestIsParamsOnly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		au   [][]byte
		hevc bool
		want bool
	}{
		{[][]byte{{0x67, 1}, {0x68, 1}}, false, true},
		{[][]byte{{0x67, 1}, {0x68, 1}, {0x65, 1}}, false, false},
		{[][]byte{{0x41, 0x9a}}, false, false}, // a P slice whose byte also reads as an H.265 VPS
		{[][]byte{{0x40, 1}, {0x42, 1}, {0x44, 1}}, true, true},
		{[][]byte{{0x40, 1}, {0x26, 1}}, true, false},
	}
	for i, c := range cases {
		if got := isParamsOnly(c.au, c.hevc); got != c.want {
			t.Errorf("case %d: got %v", i, got)
		}
	}
}
