// Command fasthttp302 is a bench-http baseline only: a bare fasthttp server answering every
// request 302, to record what the alternative HTTP stack gives on this machine. It is its own
// module so the product does not depend on fasthttp.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	const base = "http://127.0.0.1:18001"
	h := func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Location", base+string(ctx.RequestURI()))
		ctx.Response.Header.Set("Cache-Control", "no-store")
		ctx.SetStatusCode(fasthttp.StatusFound)
	}
	log.Fatal((&fasthttp.Server{Handler: h, NoDefaultServerHeader: true, NoDefaultDate: true}).ListenAndServe(*addr))
}
