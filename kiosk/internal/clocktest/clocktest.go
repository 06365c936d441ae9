// Package clocktest is a clock tests move forward: it runs with the
// system's time plus an offset, and Advance fires the timers the jump
// passes. It satisfies agent.Clock.
package clocktest

import (
	"sync"
	"time"
)

// Clock is the system's time plus an offset that Advance increases.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
	timers []timer
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// Now returns the system's time plus the offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// After is time.After on this clock: the channel receives once d has
// passed, by the system's time or by Advance.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.timers = append(c.timers, timer{at: time.Now().Add(c.offset + d), ch: ch})
	c.mu.Unlock()
	time.AfterFunc(d, func() { fire(ch, time.Now()) })
	return ch
}

// Advance moves the clock forward by d and fires the timers it passes.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	now := time.Now().Add(c.offset)
	left := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(now) {
			left = append(left, t)
		} else {
			fire(t.ch, now)
		}
	}
	c.timers = left
}

func fire(ch chan time.Time, at time.Time) {
	select {
	case ch <- at:
	default:
	}
}
