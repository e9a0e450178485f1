package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// bootSVG draws, per flavour, every measured run's time to the init marker
// (filled dots) and to process exit (open dots) on a shared time axis, with
// a p10..p90 bar and a median tick for the marker times.
func bootSVG(raw *Raw, sum Summary) string {
	const (
		width, left, right = 860.0, 130.0, 30.0
		top, rowH          = 60.0, 70.0
	)
	height := top + rowH*float64(len(sum.Flavours)) + 60
	maxMs := 1.0
	for _, b := range raw.Boots {
		if b.Round >= 0 {
			maxMs = math.Max(maxMs, math.Max(b.MarkerMs, b.ExitMs))
		}
	}
	step := niceStep(maxMs / 1000)
	axisMax := math.Ceil(maxMs/1000/step) * step
	x := func(ms float64) float64 { return left + (width-left-right)*ms/1000/axisMax }

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="22" font-size="15">%s</text>`+"\n", left,
		html.EscapeString(fmt.Sprintf("Boot to init marker (filled) and to exit (open), %d rounds, %s", raw.Rounds, raw.Date)))
	fmt.Fprintf(&sb, `<text x="%.0f" y="40" fill="#555">%s</text>`+"\n", left,
		html.EscapeString(fmt.Sprintf("nested lane, %d MiB guest, bar = p10..p90 and median of the marker time", raw.GuestMiB)))
	axisY := top + rowH*float64(len(sum.Flavours))
	for k := 0; k <= 100; k++ { // at most ~10 ticks; the bound guards odd input
		t := float64(k) * step
		if t > axisMax*(1+1e-9) {
			break
		}
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x(t*1000), top-10, x(t*1000), axisY)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`+"\n", x(t*1000), axisY+16, t)
	}
	fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" text-anchor="middle">seconds from process start</text>`+"\n", (left+width-right)/2, axisY+36)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	for i, f := range sum.Flavours {
		c := colors[i%len(colors)]
		y := top + rowH*float64(i) + rowH/2
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-10, y+4, html.EscapeString(f.Name))
		if f.MarkerMs.N > 0 {
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="10" fill="%s" fill-opacity="0.25"/>`+"\n",
				x(f.MarkerMs.P10), y-22, math.Max(1, x(f.MarkerMs.P90)-x(f.MarkerMs.P10)), c)
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n",
				x(f.MarkerMs.Median), y-25, x(f.MarkerMs.Median), y-9, c)
		}
		j := 0
		for _, b := range raw.Boots {
			if b.Flavour != f.Name || b.Round < 0 || b.Error != "" {
				continue
			}
			dy := float64(j%3-1) * 5 // spread overlapping dots a little
			j++
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" fill-opacity="0.7"/>`+"\n", x(b.MarkerMs), y+dy, c)
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="4" fill="none" stroke="%s"/>`+"\n", x(b.ExitMs), y+18+dy, c)
		}
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}

// niceStep picks a tick step of 1, 2 or 5 times a power of ten for a range.
func niceStep(span float64) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / 8
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}
