package cluster

import "testing"

func TestDialURL(t *testing.T) {
	for _, tc := range []struct{ public, private, want string }{
		{"rtsp://edge1.example.com:8555", "", "rtsp://edge1.example.com:8555"},
		{"rtsp://edge1.example.com:8555/", "10.0.0.5", "rtsp://10.0.0.5:8555"},
		{"rtsp://edge1.example.com:8555", "10.0.0.5:9999", "rtsp://10.0.0.5:8555"},
		{"rtsp://edge1.example.com:8555", "fd00::1", "rtsp://[fd00::1]:8555"},
		{"rtsp://edge1.example.com", "fd00::1", "rtsp://[fd00::1]"},
		{"rtsp://edge1.example.com:8555", "bad host", ""},
		{"", "10.0.0.5", ""},
		{"rtsp://edge1.example.com:8555/path", "", ""},
	} {
		o := Origin{Private: tc.private, Public: Public{"rtsp": tc.public}}
		if got := o.DialURL("rtsp"); got != tc.want {
			t.Errorf("DialURL(%q, private %q) = %q, want %q", tc.public, tc.private, got, tc.want)
		}
	}
}
