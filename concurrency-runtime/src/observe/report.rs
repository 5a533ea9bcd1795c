//! A [`Timeline`] as a self-contained HTML page: no script, no network, nothing
//! outside the file. The timeline is drawn as SVG (a row per thread and per worker
//! process, then a row per call with its waits apart from its runs), every slice with
//! a tooltip; then a table per function (calls, attempts, failures, 50th and 99th
//! percentiles of wait and run time), and the polls that blocked a thread.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::record::{AttemptRecord, Timeline, Waited};
use crate::kind::TaskKind;

/// The drawing's geometry: label column, timeline width, row height.
const LABEL: f64 = 240.0;
const WIDTH: f64 = 1100.0;
const ROW: f64 = 20.0;
/// At most this many calls get a row of their own (the rest are counted).
const MAX_CALL_ROWS: usize = 400;

fn color(placement: TaskKind) -> &'static str {
    match placement {
        TaskKind::AsyncIo => "#4e79a7",
        TaskKind::BlockingIo => "#f28e2b",
        TaskKind::Cpu => "#59a14f",
        TaskKind::Process => "#b07aa1",
    }
}

const FAILED: &str = "#d62728";

impl Timeline {
    /// The timeline as a self-contained HTML report (no script, nothing outside the
    /// file). See [`Recording`](super::Recording).
    pub fn to_html_report(&self) -> String {
        let span = self.ended.saturating_sub(self.started).max(1) as f64;
        let x = |at: u64| LABEL + at.saturating_sub(self.started) as f64 / span * WIDTH;
        let w = |from: u64, to: u64| (to.saturating_sub(from) as f64 / span * WIDTH).max(0.75);
        let attempts = self.attempts();
        let find = |call: u64, number: u32| {
            self.attempts
                .iter()
                .find(|attempt| attempt.call == call && attempt.attempt == number)
        };
        let threshold = super::detector::threshold_nanos();

        let mut svg = String::new();
        let mut row = 0usize;
        let section = |svg: &mut String, row: &mut usize, title: &str| {
            let y = *row as f64 * ROW + 14.0;
            let _ = write!(
                svg,
                r#"<text class="section" x="4" y="{y:.1}">{}</text>"#,
                escape(title)
            );
            *row += 1;
        };

        // Threads.
        section(&mut svg, &mut row, "Threads (a slice per poll or run)");
        let threads: BTreeSet<u32> = self.slices.iter().map(|slice| slice.thread).collect();
        let mut blocked_polls = Vec::new();
        for thread in threads {
            let name = self
                .threads
                .get(thread as usize - 1)
                .map_or("thread", String::as_str);
            lane(&mut svg, row, &format!("{name} #{thread}"));
            let y = row as f64 * ROW + 3.0;
            for slice in self.slices.iter().filter(|slice| slice.thread == thread) {
                let attempt = find(slice.call, slice.attempt);
                let took = slice.end.saturating_sub(slice.start);
                let blocked =
                    slice.placement == TaskKind::AsyncIo && threshold != 0 && took > threshold;
                let failed = attempt.is_some_and(|attempt| attempt.outcome != "ok");
                let mut title = match attempt {
                    Some(attempt) => describe(attempt),
                    None => "a task".to_owned(),
                };
                let _ = write!(
                    title,
                    "\nthis {}: {}",
                    if slice.placement == TaskKind::AsyncIo {
                        "poll"
                    } else {
                        "run"
                    },
                    duration(Duration::from_nanos(took))
                );
                if blocked {
                    title.push_str(
                        "\nBLOCKED its thread: make it an #[io_task] fn or a #[cpu_task]",
                    );
                    blocked_polls.push((attempt, format!("{name} #{thread}"), took));
                }
                rect(
                    &mut svg,
                    x(slice.start),
                    y,
                    w(slice.start, slice.end),
                    if blocked {
                        FAILED
                    } else {
                        color(slice.placement)
                    },
                    failed,
                    &title,
                    "slice",
                );
            }
            row += 1;
        }

        // Worker processes.
        let workers: BTreeSet<u32> = self
            .attempts
            .iter()
            .filter_map(|attempt| attempt.worker.map(|worker| worker.pid))
            .collect();
        if !workers.is_empty() {
            section(
                &mut svg,
                &mut row,
                "Worker processes (a slice per task, the worker's times)",
            );
        }
        for pid in workers {
            lane(&mut svg, row, &format!("worker process {pid}"));
            let y = row as f64 * ROW + 3.0;
            for attempt in &self.attempts {
                let Some(worker) = attempt.worker.filter(|worker| worker.pid == pid) else {
                    continue;
                };
                let (from, to) = if worker.started != 0 {
                    (worker.started, worker.ended)
                } else {
                    (attempt.at[0], attempt.at[2])
                };
                let title = describe(attempt);
                rect(
                    &mut svg,
                    x(from),
                    y,
                    w(from, to),
                    color(TaskKind::Process),
                    attempt.outcome != "ok",
                    &title,
                    "slice worker",
                );
            }
            row += 1;
        }

        // Calls.
        let mut calls: Vec<u64> = self.attempts.iter().map(|attempt| attempt.call).collect();
        calls.sort_unstable();
        calls.dedup();
        let hidden = calls.len().saturating_sub(MAX_CALL_ROWS);
        section(
            &mut svg,
            &mut row,
            "Calls (grey: waiting for a limit, queued, backing off; colour: running)",
        );
        for &call in calls.iter().take(MAX_CALL_ROWS) {
            let mine: Vec<&AttemptRecord> = self
                .attempts
                .iter()
                .filter(|attempt| attempt.call == call)
                .collect();
            let Some(first) = mine.first() else { continue };
            lane(&mut svg, row, &format!("{} #{call}", first.task));
            let y = row as f64 * ROW + 3.0;
            for wait in self.waits.iter().filter(|wait| wait.call == call) {
                let title = match wait.what {
                    Waited::Limit => "waiting for its limit",
                    Waited::Backoff => "backoff before a retry",
                };
                let title = format!(
                    "{}: {title}, {}",
                    first.task,
                    duration(Duration::from_nanos(wait.end.saturating_sub(wait.start)))
                );
                rect(
                    &mut svg,
                    x(wait.start),
                    y,
                    w(wait.start, wait.end),
                    "#c7c7c7",
                    false,
                    &title,
                    "wait",
                );
            }
            for attempt in mine {
                let [created, started, ended] = attempt.at;
                let ran = if started == 0 { ended } else { started };
                if ran > created {
                    let title = format!(
                        "{} attempt {}: queued {}",
                        attempt.task,
                        attempt.attempt,
                        duration(Duration::from_nanos(ran - created))
                    );
                    rect(
                        &mut svg,
                        x(created),
                        y,
                        w(created, ran),
                        "#dcdcdc",
                        false,
                        &title,
                        "wait",
                    );
                }
                rect(
                    &mut svg,
                    x(ran),
                    y,
                    w(ran, ended),
                    color(attempt.placement),
                    attempt.outcome != "ok",
                    &describe(attempt),
                    "run",
                );
                if attempt.outcome != "ok" {
                    let _ = write!(
                        svg,
                        r#"<text class="mark" x="{:.1}" y="{:.1}">✕ {}</text>"#,
                        x(ended) + 2.0,
                        y + 11.0,
                        escape(attempt.outcome)
                    );
                }
            }
            row += 1;
        }

        // The time axis.
        let height = row as f64 * ROW + 30.0;
        let mut axis = String::new();
        let total = Duration::from_nanos(self.ended.saturating_sub(self.started));
        let step = tick_step(total);
        let mut tick = Duration::ZERO;
        while tick <= total && !step.is_zero() {
            let at = LABEL + tick.as_nanos() as f64 / span * WIDTH;
            let _ = write!(
                axis,
                r#"<line class="tick" x1="{at:.1}" y1="0" x2="{at:.1}" y2="{:.1}"/><text class="axis" x="{at:.1}" y="{:.1}">{}</text>"#,
                height - 22.0,
                height - 8.0,
                duration(tick)
            );
            tick += step;
        }

        let mut html = String::new();
        let failures = attempts.iter().filter(|attempt| !attempt.is_ok()).count();
        let _ = write!(
            html,
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>concurrency-runtime report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
svg text.section {{ font-weight: 600; }}
svg text.mark {{ fill: {FAILED}; font-weight: 600; }}
svg text.axis {{ fill: #666; text-anchor: middle; }}
svg line.tick {{ stroke: #eee; }}
svg rect.lane {{ fill: #f7f7f7; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: -1px; }}
</style></head><body>
<h1>concurrency-runtime report</h1>
<p id="summary">{} attempts of {} calls in {}; {} did not end ok.{}</p>
<p class="legend"><span style="background:{}"></span>async task (tokio)<span style="background:{}"></span>blocking thread<span style="background:{}"></span>rayon (cpu)<span style="background:{}"></span>worker process<span style="background:#dcdcdc"></span>waiting<span style="outline:2px solid {FAILED}"></span>failed attempt<span style="background:{FAILED}"></span>poll that blocked its thread</p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}">{axis}{svg}</svg>
"#,
            attempts.len(),
            calls.len(),
            duration(total),
            failures,
            if self.dropped > 0 {
                format!(
                    " {} events were dropped (the recording was full).",
                    self.dropped
                )
            } else {
                String::new()
            },
            color(TaskKind::AsyncIo),
            color(TaskKind::BlockingIo),
            color(TaskKind::Cpu),
            color(TaskKind::Process),
            LABEL + WIDTH + 140.0,
        );
        if hidden > 0 {
            let _ = write!(html, "<p>{hidden} more calls are not drawn as rows.</p>");
        }

        html.push_str(
            "<h2>Per function</h2>\n<table id=\"functions\"><tr><th>function</th><th>placement</th>\
             <th>calls</th><th>attempts</th><th>failures</th><th>wait p50</th><th>wait p99</th>\
             <th>run p50</th><th>run p99</th></tr>\n",
        );
        for function in self.functions() {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(function.task),
                escape(function.placement.executor()),
                function.calls,
                function.attempts,
                function.failures,
                duration(function.wait_p50),
                duration(function.wait_p99),
                duration(function.run_p50),
                duration(function.run_p99),
            );
        }
        html.push_str("</table>\n");

        html.push_str("<h2>Polls that blocked their thread</h2>\n");
        if blocked_polls.is_empty() {
            let _ = writeln!(
                html,
                "<p id=\"blocked\">None (threshold {}).</p>",
                duration(Duration::from_nanos(threshold))
            );
        } else {
            html.push_str("<table id=\"blocked\"><tr><th>task</th><th>call site</th><th>thread</th><th>poll</th></tr>\n");
            for (attempt, thread, took) in blocked_polls {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(attempt.map_or("a task", |attempt| attempt.task)),
                    escape(attempt.map_or("", |attempt| attempt.call_site.as_str())),
                    escape(&thread),
                    duration(Duration::from_nanos(took)),
                );
            }
            html.push_str("</table>\n<p>Blocking calls belong in an <code>#[io_task] fn</code> (a blocking thread), CPU work in a <code>#[cpu_task]</code>.</p>\n");
        }
        html.push_str("</body></html>\n");
        html
    }

    /// Writes [`to_html_report`](Timeline::to_html_report) to `path`.
    pub fn write_html_report(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_html_report())
    }
}

/// A lane's background and label.
fn lane(svg: &mut String, row: usize, label: &str) {
    let y = row as f64 * ROW;
    let _ = write!(
        svg,
        r#"<rect class="lane" x="{LABEL}" y="{:.1}" width="{WIDTH}" height="{:.1}"/><text x="4" y="{:.1}">{}</text>"#,
        y + 2.0,
        ROW - 4.0,
        y + 14.0,
        escape(label)
    );
}

#[allow(clippy::too_many_arguments)]
fn rect(
    svg: &mut String,
    x: f64,
    y: f64,
    w: f64,
    fill: &str,
    failed: bool,
    title: &str,
    class: &str,
) {
    let stroke = if failed {
        format!(r#" stroke="{FAILED}" stroke-width="1.5""#)
    } else {
        String::new()
    };
    let _ = write!(
        svg,
        r#"<rect class="{class}" x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{fill}"{stroke}><title>{}</title></rect>"#,
        ROW - 6.0,
        escape(title)
    );
}

/// An attempt, for a tooltip.
fn describe(attempt: &AttemptRecord) -> String {
    let [created, started, ended] = attempt.at;
    let ran = if started == 0 { ended } else { started };
    let mut text = format!(
        "{} ({}), attempt {}: {}\ncalled at {}\nwaited {}, ran {}",
        attempt.task,
        attempt.placement.executor(),
        attempt.attempt,
        attempt.outcome,
        attempt.call_site,
        duration(Duration::from_nanos(ran.saturating_sub(created))),
        duration(Duration::from_nanos(ended.saturating_sub(ran))),
    );
    if let Some(worker) = attempt.worker {
        let _ = write!(text, "\nworker pid {}", worker.pid);
        if let Some(run) = worker.run() {
            let _ = write!(text, ", body ran {}", duration(run));
        }
    }
    if let Some(error) = &attempt.error {
        let _ = write!(text, "\n{error}");
    }
    text
}

/// A tick spacing of 1, 2 or 5 times a power of ten, about eight ticks in `total`.
fn tick_step(total: Duration) -> Duration {
    let target = total.as_nanos() as f64 / 8.0;
    if target <= 0.0 {
        return Duration::ZERO;
    }
    let power = 10f64.powf(target.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|step| *step >= target)
        .unwrap_or(10.0 * power);
    Duration::from_nanos(step.max(1.0) as u64)
}

/// A duration, short.
fn duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_ticks_are_round() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            tick_step(Duration::from_millis(800)),
            Duration::from_millis(100)
        );
        assert_eq!(
            tick_step(Duration::from_millis(130)),
            Duration::from_millis(20)
        );
        assert_eq!(tick_step(Duration::ZERO), Duration::ZERO);
        assert_eq!(duration(Duration::from_micros(1500)), "1.5 ms");
    }
}
