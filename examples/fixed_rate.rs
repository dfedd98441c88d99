//! A fixed-rate HTTP/1.1 load client (what wrk2 does): one thread that never sleeps (it
//! spins on its own core, so the schedule keeps to microseconds, not a timer's tick)
//! drives `CONNS` non-blocking keep-alive connections that send
//! `GET URL` on a fixed schedule adding up to `RATE` requests a second for `SECS` seconds,
//! and a request the server kept waiting (its connection still busy with the previous
//! answer when it was due) is counted from when it was due, not when it was sent — a
//! server that falls behind is charged for the wait it causes (no coordinated omission),
//! while the client's own timer lateness (a millisecond tick) is not.
//!
//! ```text
//! cargo run --release --example fixed_rate -- http://127.0.0.1:8080/1k.json 40000 10 32
//! {"rate":40000,"sent":400000,"errors":0,"achieved":39987.1,"p50_us":61,"p99_us":212,"p999_us":540,"max_us":2103}
//! ```
//!
//! Used by `benches/compare.sh` (`MODE=rate`) for hit latency at 50% and 80% of the most a
//! server answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Args {
    host: String,
    port: u16,
    path: String,
    rate: f64,
    secs: f64,
    conns: usize,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fixed_rate http://HOST:PORT/PATH RATE SECS [CONNS]";
    let uri: http::Uri = a
        .first()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("URL: {e}"))?;
    let rate: f64 = a
        .get(1)
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("RATE: {e}"))?;
    let secs: f64 = a
        .get(2)
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("SECS: {e}"))?;
    let conns: usize = a
        .get(3)
        .map_or(Ok(32), |c| c.parse())
        .map_err(|e| format!("CONNS: {e}"))?;
    if rate <= 0.0 || secs <= 0.0 || conns == 0 {
        return Err(usage.into());
    }
    Ok(Args {
        host: uri.host().ok_or("URL has no host")?.to_string(),
        port: uri.port_u16().unwrap_or(80),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        rate,
        secs,
        conns,
    })
}

/// One connection: the request it is waiting on (when it was due or sent), and the bytes
/// of the answer so far.
struct Conn {
    stream: TcpStream,
    next_due: Instant,
    waiting: Option<Instant>,
    buf: Vec<u8>,
}

/// The length of a complete response at the start of `buf` (a `Content-Length` body), and
/// whether it was a 2xx; `None` while incomplete.
fn complete(buf: &[u8]) -> Option<(usize, bool)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let ok = head.split(' ').nth(1).is_some_and(|s| s.starts_with('2'));
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + len).then_some((head_end + len, ok))
}

/// Runs the schedule: what each request took, and the failures.
fn run(args: &Args) -> Result<(Vec<u32>, u64), String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\n\r\n",
        args.path, args.host, args.port
    );
    let gap = Duration::from_secs_f64(args.conns as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(args.secs);
    let mut conns = Vec::new();
    for i in 0..args.conns {
        let stream = TcpStream::connect((args.host.as_str(), args.port))
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        conns.push(Conn {
            stream,
            next_due: start + gap.mul_f64(i as f64 / args.conns as f64),
            waiting: None,
            buf: Vec::with_capacity(64 * 1024),
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        let mut busy = false;
        for c in &mut conns {
            match c.waiting {
                None if c.next_due < end && c.next_due <= now => {
                    // Due now, or late because the answer before kept it: counted from when due.
                    if c.stream.write_all(request.as_bytes()).is_err() {
                        errors += 1;
                        c.next_due = end;
                        continue;
                    }
                    c.waiting = Some(c.next_due);
                    c.next_due += gap;
                    busy = true;
                }
                None => busy |= c.next_due < end,
                Some(from) => {
                    busy = true;
                    match c.stream.read(&mut chunk) {
                        Ok(0) => {
                            errors += 1;
                            c.waiting = None;
                            c.next_due = end;
                        }
                        Ok(n) => {
                            c.buf.extend_from_slice(&chunk[..n]);
                            if let Some((len, ok)) = complete(&c.buf) {
                                c.buf.drain(..len);
                                c.waiting = None;
                                if ok {
                                    let took = Instant::now() - from;
                                    latencies.push(took.as_micros().min(u32::MAX as u128) as u32);
                                } else {
                                    errors += 1;
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            errors += 1;
                            c.waiting = None;
                            c.next_due = end;
                        }
                    }
                }
            }
        }
        if !busy {
            return Ok((latencies, errors));
        }
    }
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let began = Instant::now();
    let (mut all, errors) = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    all.sort_unstable();
    let took = began.elapsed().as_secs_f64().max(args.secs);
    println!(
        "{{\"rate\":{},\"sent\":{},\"errors\":{errors},\"achieved\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        args.rate,
        all.len() as u64 + errors,
        all.len() as f64 / took,
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        quantile(&all, 0.999),
        all.last().copied().unwrap_or(0)
    );
}
