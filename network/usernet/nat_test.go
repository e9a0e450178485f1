package usernet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

var (
	testGW      = netip.MustParseAddr("10.0.2.2")
	testGuestIP = netip.MustParseAddr("10.0.2.15")
)

func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// guestHTTPClient returns an HTTP client whose connections start in the
// guest stack.
func guestHTTPClient(g *testGuest) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					return nil, err
				}
				return gonet.DialContextTCP(ctx, g.s, fullAddr(ap), ipv4.ProtocolNumber)
			},
		},
	}
}

func TestGuestTCPToHostLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer srv.Close()
	hostPort := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()

	b := newTestBackend(t, Config{})
	g := newTestGuest(t, b, testGuestIP, testGW)
	c := guestHTTPClient(g)
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(testGW, hostPort))
	for i := range 3 {
		resp, err := c.Get(url + fmt.Sprint(i))
		if err != nil {
			t.Fatalf("GET through the gateway: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != fmt.Sprintf("hello /%d", i) {
			t.Fatalf("body %q, %v", body, err)
		}
	}

	// A big upload and download exercise flow control both ways.
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	resp, err := c.Post(url, "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != big {
		t.Fatalf("echoed %d bytes (%v), want %d", len(body), err, len(big))
	}
	if st := b.Stats(); st.TxFrames == 0 || st.RxFrames == 0 || st.TxMalformed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGuestTCPRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(l.Addr().String()).Port()
	l.Close() // now nothing listens there

	b := newTestBackend(t, Config{})
	g := newTestGuest(t, b, testGuestIP, testGW)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = gonet.DialContextTCP(ctx, g.s, fullAddr(netip.AddrPortFrom(testGW, port)), ipv4.ProtocolNumber)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial of a closed host port: %v, want a reset", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusal took %s", d)
	}
	// An address of the virtual subnet other than the gateway is not NATed.
	_, err = gonet.DialContextTCP(ctx, g.s, fullAddr(netip.MustParseAddrPort("10.0.2.3:80")), ipv4.ProtocolNumber)
	if err == nil {
		t.Fatal("dial of 10.0.2.3 succeeded")
	}
}

func TestHostFwdTCP(t *testing.T) {
	b := newTestBackend(t, Config{HostForwards: []Forward{{Proto: "tcp", HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 80}}})
	g := newTestGuest(t, b, testGuestIP, testGW)
	l, err := gonet.ListenTCP(g.s, tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(testGuestIP.As4()), Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "guest says hi to %s", r.RemoteAddr)
	})}
	go srv.Serve(l)
	defer srv.Close()

	addrs := b.HostForwardAddrs()
	if len(addrs) != 1 || addrs[0].Port() == 0 {
		t.Fatalf("HostForwardAddrs = %v", addrs)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 3 {
		resp, err := c.Get("http://" + addrs[0].String() + "/")
		if err != nil {
			t.Fatalf("GET via hostfwd: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "guest says hi to 10.0.2.2:"; !strings.HasPrefix(string(body), want) {
			t.Fatalf("body %q, want prefix %q", body, want)
		}
	}
}

// udpEcho serves a UDP echo on conn until it is closed.
func udpEcho(conn net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		conn.WriteTo(buf[:n], from)
	}
}

func TestGuestUDPThroughNAT(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go udpEcho(pc)
	port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()

	b := newTestBackend(t, Config{UDPIdleTimeout: 300 * time.Millisecond})
	g := newTestGuest(t, b, testGuestIP, testGW)
	to := fullAddr(netip.AddrPortFrom(testGW, port))
	c, err := gonet.DialUDP(g.s, nil, &to, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4000)
	for i, size := range []int{1, 100, 3000} { // 3000 is fragmented both ways
		msg := []byte(strings.Repeat(fmt.Sprint(i), size))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("echo %d: got %d bytes, %v", i, n, err)
		}
	}
	if n := b.flowCount(); n != 1 {
		t.Errorf("%d UDP flows, want 1", n)
	}
	waitFor(t, "idle UDP flow to end", func() bool { return b.flowCount() == 0 })
	// A new datagram opens a new flow.
	c.Write([]byte("again"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("echo after idle: %q, %v", buf[:n], err)
	}
}

func TestHostFwdUDP(t *testing.T) {
	b := newTestBackend(t, Config{HostForwards: []Forward{{Proto: "udp", HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 7}}})
	g := newTestGuest(t, b, testGuestIP, testGW)
	local := tcpip.FullAddress{NIC: guestNIC, Addr: tcpip.AddrFrom4(testGuestIP.As4()), Port: 7}
	gc, err := gonet.DialUDP(g.s, &local, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	go udpEcho(gc)

	hc, err := net.Dial("udp", b.HostForwardAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	buf := make([]byte, 100)
	for i := range 3 {
		msg := fmt.Sprintf("ping %d", i)
		hc.Write([]byte(msg))
		hc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := hc.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("echo via UDP hostfwd: %q, %v", buf[:n], err)
		}
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := netip.MustParseAddrPort(l.Addr().String())
	_, err = New(Config{HostForwards: []Forward{
		{Proto: "udp", HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), GuestPort: 53},
		{Proto: "tcp", HostAddr: taken, GuestPort: 22},
	}})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), taken.String()) {
		t.Fatalf("New with a busy port: %v", err)
	}
}

// waitFor polls cond (tests only) until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *Backend) flowCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.udpFlows
}
