//! The status page (`GET /`, `GET /status`): `GET /v1/status` rendered as one small HTML page
//! for an operator's browser. No script, nothing loaded from elsewhere (the answer's
//! `Content-Security-Policy` forbids both); it reloads itself every 10 s. Each value sits in an
//! element with a `data-field` attribute named as the JSON field, so that a test (or a scraper)
//! finds it.

use std::fmt::Write as _;

use kms_crypto::wire::NodeStatus;

/// Escapes `text` for an HTML text node or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A value, or a dash for one not known (yet).
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

/// Wei as ETH with up to 6 decimals (the exact wei stay in the JSON).
fn eth(wei: &str) -> String {
    let Ok(wei) = wei.parse::<u128>() else {
        return format!("{wei} wei");
    };
    let whole = wei / 1_000_000_000_000_000_000;
    let micro = (wei % 1_000_000_000_000_000_000) / 1_000_000_000_000;
    format!("{whole}.{micro:06} ETH")
}

/// A duration in seconds, in words (`3 h 2 min`).
fn duration(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, m) => format!("{m} min {} s", seconds % 60),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The page.
pub(super) fn render_status(status: &NodeStatus) -> String {
    let mut rows: Vec<(&str, &str, String)> = vec![
        ("Version", "version", status.version.clone()),
        ("Chain id", "chainId", status.chain_id.to_string()),
        ("Staker", "staker", status.staker.to_string()),
        ("Worker", "worker", status.worker.to_string()),
        ("Uptime", "uptimeSeconds", duration(status.uptime_seconds)),
        ("Head block", "headBlock", or_dash(status.head_block)),
        (
            "Head read",
            "headAgeMs",
            or_dash(status.head_age_ms.map(|ms| format!("{ms} ms ago"))),
        ),
        (
            "Follower block",
            "cursorBlock",
            or_dash(status.cursor_block),
        ),
        (
            "Lag",
            "lagBlocks",
            or_dash(status.lag_blocks.map(|l| format!("{l} blocks"))),
        ),
        ("Kfrags held", "kfrags", status.kfrags.to_string()),
        ("Policies followed", "policies", status.policies.to_string()),
        (
            "Requests served",
            "requestsServed",
            status.requests_served.to_string(),
        ),
        (
            "Capsules re-encrypted",
            "reencryptions",
            status.reencryptions.to_string(),
        ),
    ];
    let standing = status.standing.as_ref();
    rows.extend([
        (
            "Current period",
            "currentPeriod",
            or_dash(standing.map(|s| s.current_period)),
        ),
        (
            "Last commitment",
            "lastCommittedPeriod",
            match standing {
                Some(s) => s
                    .last_committed_period
                    .map_or_else(|| "never".to_owned(), |p| format!("period {p}")),
                None => "—".to_owned(),
            },
        ),
        (
            "Next commitment",
            "nextCommitmentPeriod",
            or_dash(standing.map(|s| {
                format!(
                    "period {}, due before {} (Unix s){}",
                    s.next_commitment_period,
                    s.next_commitment_due_by,
                    if s.committed_next {
                        ": made"
                    } else {
                        ": not yet"
                    }
                )
            })),
        ),
        (
            "Worker balance",
            "workerBalanceWei",
            or_dash(standing.map(|s| {
                format!(
                    "{}{}",
                    eth(&s.worker_balance_wei),
                    if s.low_balance { " — LOW" } else { "" }
                )
            })),
        ),
        (
            "Pending duties",
            "pendingDuties",
            or_dash(standing.map(|s| s.pending_duties)),
        ),
        (
            "Standing read",
            "standingAgeSeconds",
            or_dash(standing.map(|s| format!("{} s ago, block {}", s.age_seconds, s.block))),
        ),
    ]);

    let mut html = String::with_capacity(4096);
    html.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>KMS node status</title><style>\
         body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:46em;padding:0 1em}\
         table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;\
         border-bottom:1px solid #ddd;vertical-align:top}th{width:12em;font-weight:600}\
         td{font-family:ui-monospace,monospace;word-break:break-all}\
         .ok{color:#176117}.warn{background:#fff4d6;border:1px solid #e0b000;padding:.5em 1em}\
         </style></head><body>\n<h1>KMS node</h1>\n",
    );
    if status.warnings.is_empty() {
        html.push_str("<p class=\"ok\" data-field=\"warnings\">No warnings.</p>\n");
    } else {
        html.push_str("<div class=\"warn\" data-field=\"warnings\"><strong>Warnings</strong><ul>");
        for warning in &status.warnings {
            let _ = write!(html, "<li>{}</li>", escape(warning));
        }
        html.push_str("</ul></div>\n");
    }
    html.push_str("<table>\n");
    for (label, field, value) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td data-field=\"{field}\">{}</td></tr>",
            escape(label),
            escape(&value)
        );
    }
    html.push_str(
        "</table>\n<p>The same as JSON: <a href=\"/v1/status\">/v1/status</a>; metrics: \
         <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n",
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_crypto::wire::StandingStatus;

    fn status() -> NodeStatus {
        serde_json::from_value(serde_json::json!({
            "kfrags": 3, "uptimeSeconds": 3_725, "policies": 2, "cursorBlock": 98,
            "headBlock": 100, "headAgeMs": 250, "version": "0.1.0", "chainId": 31337,
            "staker": "0x0000000000000000000000000000000000000001",
            "worker": "0x0000000000000000000000000000000000000002",
            "lagBlocks": 2, "requestsServed": 5, "reencryptions": 9,
            "warnings": ["fund the <worker> & \"soon\""],
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_field_is_rendered_and_text_is_escaped() {
        let mut status = status();
        status.standing = Some(StandingStatus {
            block: 99,
            age_seconds: 4,
            current_period: 7,
            last_committed_period: Some(8),
            next_commitment_period: 8,
            next_commitment_due_by: 28_800,
            committed_next: true,
            worker_balance_wei: "1500000000000000000".into(),
            low_balance_below_wei: "3500000000000000".into(),
            low_balance: false,
            pending_duties: 0,
        });
        let html = render_status(&status);
        for expected in [
            "data-field=\"headBlock\">100<",
            "data-field=\"lagBlocks\">2 blocks<",
            "data-field=\"workerBalanceWei\">1.500000 ETH<",
            "data-field=\"lastCommittedPeriod\">period 8<",
            "data-field=\"uptimeSeconds\">1 h 2 min<",
            "fund the &lt;worker&gt; &amp; &quot;soon&quot;",
        ] {
            assert!(html.contains(expected), "{expected} not in {html}");
        }
        assert!(!html.contains("<worker>"));
    }

    #[test]
    fn unknown_values_are_dashes() {
        let mut status = status();
        status.head_block = None;
        status.warnings.clear();
        let html = render_status(&status);
        assert!(html.contains("data-field=\"headBlock\">—<"));
        assert!(html.contains("data-field=\"workerBalanceWei\">—<"));
        assert!(html.contains("No warnings."));
    }
}
