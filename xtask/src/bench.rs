//! `cargo xtask bench`: runs the criterion benches and ends with one table
//! of each measure beside its peer or limit, measured in the same run.
//!
//! The pairs live in [`PAIRS`], the one place that says which bench is
//! ours and what it is compared with. Rows come from criterion's
//! `<target dir>/criterion/**/new/` files written by this run only, so a
//! filtered or `--quick` run never mixes in an old figure.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::runner::{self, Outcome, Runner};

/// What a measure is compared with.
pub enum Peer {
    /// Another bench of the same run, by criterion id, and what it is.
    Bench(&'static str, &'static str),
    /// A fixed limit in nanoseconds per element (per iteration when the
    /// bench has no throughput), and where it comes from.
    Limit(f64, &'static str),
}

/// One row of the table: a measure, our bench's criterion id, its peer and
/// the target the ratio is held to.
pub struct Pair {
    pub measure: &'static str,
    pub ours: &'static str,
    pub peer: Peer,
    pub target: &'static str,
}

const fn pair(measure: &'static str, ours: &'static str, peer: Peer, target: &'static str) -> Pair {
    Pair {
        measure,
        ours,
        peer,
        target,
    }
}

/// Every compared measure (issue 16's table), in print order.
pub const PAIRS: &[Pair] = &[
    pair(
        "StreamingMapping map+unmap, 4 KiB Vec",
        "coherent_preset/streaming_mapping_map_unmap_vec",
        Peer::Bench(
            "coherent_preset/platform_map_unmap",
            "bare platform map+unmap",
        ),
        "<= 1.3x",
    ),
    pair(
        "StreamingMapping map+unmap, 4 KiB Vec",
        "coherent_preset/streaming_mapping_map_unmap_vec",
        Peer::Bench(
            "coherent_preset/baseline_raw_pointer",
            "raw-pointer baseline",
        ),
        "",
    ),
    pair(
        "ring round trip, 64 B, batch 1",
        "submit_complete_64B/batch_1/dma-ring nvme/1",
        Peer::Bench("submit_complete_64B/batch_1/rtrb/1", "two rtrb queues"),
        "(see interleaved)",
    ),
    pair(
        "ring round trip, 64 B, batch 1",
        "submit_complete_64B/batch_1/dma-ring nvme/1",
        Peer::Bench(
            "submit_complete_64B/batch_1/crossbeam ArrayQueue/1",
            "two crossbeam ArrayQueues",
        ),
        "",
    ),
    pair(
        "ring round trip, 64 B, batch 32",
        "submit_complete_64B/batch_32/dma-ring nvme/32",
        Peer::Bench("submit_complete_64B/batch_32/rtrb/32", "two rtrb queues"),
        "(see interleaved)",
    ),
    pair(
        "ring round trip, 64 B, batch 32",
        "submit_complete_64B/batch_32/dma-ring nvme/32",
        Peer::Bench(
            "submit_complete_64B/batch_32/crossbeam ArrayQueue/32",
            "two crossbeam ArrayQueues",
        ),
        "",
    ),
    pair(
        "ring round trip, 64 B, batch 32",
        "submit_complete_64B/batch_32/dma-ring nvme/32",
        Peer::Bench(
            "submit_complete_64B/batch_32/bare phase-tag ring/32",
            "bare phase-tag ring (the protocol alone)",
        ),
        "",
    ),
    pair(
        "bare phase-tag ring, batch 32",
        "submit_complete_64B/batch_32/bare phase-tag ring/32",
        Peer::Bench("submit_complete_64B/batch_32/rtrb/32", "two rtrb queues"),
        "",
    ),
    pair(
        "SG build + PRP, per page, 1 MiB",
        "sg_build_encode/build+prp/1MiB",
        Peer::Limit(5.0, "target 5 ns/page"),
        "<= 1.0x",
    ),
    pair(
        "SG build + PRP, per page, 16 MiB",
        "sg_build_encode/build+prp/16MiB",
        Peer::Limit(5.0, "target 5 ns/page"),
        "<= 1.0x",
    ),
    pair(
        "SG build + PRP, per page, 256 MiB",
        "sg_build_encode/build+prp/256MiB",
        Peer::Limit(5.0, "target 5 ns/page"),
        "<= 1.0x",
    ),
    pair(
        "SG build + PRP, per page, 1 GiB",
        "sg_build_encode/build+prp/1024MiB",
        Peer::Limit(5.0, "target 5 ns/page"),
        "<= 1.0x",
    ),
    pair(
        "IOMMU map+unmap 4 KiB, deferred, 1k live",
        "iommu_map_unmap_4k/1000",
        Peer::Limit(100.0, "target 100 ns"),
        "<= 1.0x",
    ),
    pair(
        "IOMMU map+unmap 4 KiB, deferred, 1M live",
        "iommu_map_unmap_4k/1000000",
        Peer::Limit(100.0, "target 100 ns"),
        "<= 1.0x",
    ),
    pair(
        "dma-check map+sync+unmap, 4 KiB",
        "map_sync_unmap_4k/checked",
        Peer::Bench("map_sync_unmap_4k/direct", "bare direct platform"),
        "",
    ),
    pair(
        "dma-check map+sync+unmap, 4 KiB",
        "map_sync_unmap_4k/checked",
        Peer::Limit(60.0, "target 60 ns"),
        "<= 1.0x",
    ),
    pair(
        "sim NVMe 4 KiB write+read, per command",
        "nvme/4k_write_read_pair_noncoherent_detector_on",
        Peer::Limit(1000.0, "target 1M commands/s"),
        "<= 1.0x",
    ),
    pair(
        "bounce 64 KiB map+unmap, bidirectional",
        "bounce_64k/bounced_map_unmap_bidirectional",
        Peer::Bench("bounce_64k/memcpy_there_and_back", "memcpy there and back"),
        "",
    ),
];

/// Criterion's arguments for `--quick`: its own quick mode (stop once the
/// estimate is stable) with short warm-up and measurement.
const QUICK: &[&str] = &[
    "--quick",
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "1",
];

/// The `cargo bench` arguments for `extra` (the user's, where `--quick`
/// becomes criterion arguments after `--`): the whole workspace unless a
/// package is named, and only `[[bench]]` targets (`--bench '*'`; the
/// libraries' libtest harnesses, which `--benches` includes, would refuse
/// criterion's arguments).
pub fn cargo_args(extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["bench".into()];
    let quick = extra.iter().any(|a| a == "--quick");
    let mut rest = extra.iter().filter(|a| *a != "--quick").cloned();
    let ours: Vec<String> = rest.by_ref().take_while(|a| a != "--").collect();
    let package = |a: &String| a == "-p" || a.starts_with("--package") || a.starts_with("-p");
    if !ours.iter().any(package) {
        args.extend(["--workspace", "--exclude", "xtask"].map(String::from));
    }
    args.extend(["--bench", "*"].map(String::from));
    args.extend(ours);
    let after: Vec<String> = rest.collect();
    if quick || !after.is_empty() || extra.iter().any(|a| a == "--") {
        args.push("--".into());
        if quick {
            args.extend(QUICK.iter().map(|a| a.to_string()));
        }
        args.extend(after);
    }
    args
}

/// `cargo xtask bench [--quick] [cargo bench args...]`.
pub fn run(r: &mut Runner, extra: &[String]) {
    let dir = runner::target_dir(r.root()).join("criterion");
    let started = SystemTime::now();
    let args = cargo_args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Criterion resolves a relative CARGO_TARGET_DIR against each bench's
    // package directory; naming its output directory keeps it where the
    // table reads.
    let home = dir.display().to_string();
    if r.cargo("benches", &args, &[("CRITERION_HOME", &home)]) != Outcome::Pass {
        return;
    }
    let results = collect(&dir, started);
    let ring_ran = results.iter().any(|e| e.id.starts_with(RING_GROUP));
    let wall = if ring_ran {
        ring_interleaved(r, extra.iter().any(|a| a == "--quick"))
    } else {
        Vec::new()
    };
    print_table(&results, &wall);
}

/// The criterion group of the ring bench's round trips.
const RING_GROUP: &str = "submit_complete_64B/";

/// Rounds of the ring bench's interleaved wall-clock mode, run after
/// criterion (a few seconds; a quarter of them with `--quick`).
const WALL_ROUNDS: u32 = 2000;

/// One line of the ring bench's interleaved mode (`DMA_BENCH_WALL`): the
/// median chunk of one case at one batch size and the median, over the
/// rounds, of its chunk's time over rtrb's and over the bare ring's.
#[derive(Clone, Debug, PartialEq)]
pub struct WallLine {
    pub batch: u32,
    pub case: String,
    pub median_ns: f64,
    pub to_rtrb: f64,
    pub to_bare: f64,
}

/// The ring bench's interleaved figures, parsed from its output:
/// `batch 32 ours: fastest 290.1 ns, median 300.2 ns per round trip;
/// median round ratio 0.990 to rtrb, 1.004 to bare`.
pub fn parse_wall(text: &str) -> Vec<WallLine> {
    let number = |s: &str| s.trim_end_matches([',', ';']).parse::<f64>().ok();
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                let at = words.iter().position(|w| *w == key)?;
                number(words.get(at + 1)?)
            };
            if words.first() != Some(&"batch") {
                return None;
            }
            let ratio = words.iter().position(|w| *w == "ratio")?;
            Some(WallLine {
                batch: words.get(1)?.parse().ok()?,
                case: words.get(2)?.trim_end_matches(':').to_string(),
                median_ns: after("median")?,
                to_rtrb: number(words.get(ratio + 1)?)?,
                to_bare: number(words.get(ratio + 4)?)?,
            })
        })
        .collect()
}

/// Runs the ring bench's interleaved mode and parses it; nothing (with a
/// failed step recorded) if it did not run.
fn ring_interleaved(r: &mut Runner, quick: bool) -> Vec<WallLine> {
    let rounds = if quick { WALL_ROUNDS / 4 } else { WALL_ROUNDS };
    let name = "ring, interleaved";
    println!("\n==> {name}: DMA_BENCH_WALL={rounds} cargo bench -p dma-ring --bench ring");
    let start = std::time::Instant::now();
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-q", "-p", "dma-ring", "--bench", "ring"])
            .env("DMA_BENCH_WALL", rounds.to_string())
            .current_dir(r.root())
            .output();
    let seconds = start.elapsed().as_secs_f64();
    let lines = match &output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            parse_wall(&text)
        }
        _ => Vec::new(),
    };
    let outcome = if lines.is_empty() {
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    r.record(name, outcome, seconds, "");
    lines
}

/// The table's rows for the interleaved ring figures, per entry.
pub fn wall_rows(lines: &[WallLine]) -> Vec<[String; 6]> {
    let find = |batch: u32, case: &str| lines.iter().find(|l| l.batch == batch && l.case == case);
    let mut rows = Vec::new();
    for batch in [1, 32] {
        let (Some(ours), Some(bare), Some(rtrb)) = (
            find(batch, "ours"),
            find(batch, "bare"),
            find(batch, "rtrb"),
        ) else {
            continue;
        };
        let per_entry = |l: &WallLine| human_time(l.median_ns / f64::from(batch));
        let measure = format!("ring round trip, 64 B, batch {batch}, interleaved");
        rows.push([
            measure.clone(),
            per_entry(ours),
            "two rtrb queues, interleaved".into(),
            per_entry(rtrb),
            format!("{:.2}x", ours.to_rtrb),
            "<= 1.0x".into(),
        ]);
        rows.push([
            measure,
            per_entry(ours),
            "bare phase-tag ring, interleaved".into(),
            per_entry(bare),
            format!("{:.2}x", ours.to_bare),
            String::new(),
        ]);
        rows.push([
            format!("bare phase-tag ring, batch {batch}, interleaved"),
            per_entry(bare),
            "two rtrb queues, interleaved".into(),
            per_entry(rtrb),
            format!("{:.2}x", bare.to_rtrb),
            "(the protocol alone)".into(),
        ]);
    }
    rows
}

/// One criterion result.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Criterion's id, `group/function[/value]`.
    pub id: String,
    /// Median time per iteration.
    pub median_ns: f64,
    /// Elements per iteration, when the bench declared a throughput.
    pub elements: Option<u64>,
}

impl Estimate {
    /// Nanoseconds per element (per iteration without a throughput).
    fn per_element(&self) -> f64 {
        self.median_ns / self.elements.unwrap_or(1).max(1) as f64
    }
}

/// Every result under `dir` written at or after `since`.
pub fn collect(dir: &Path, since: SystemTime) -> Vec<Estimate> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if !path.is_dir() || path.file_name().is_some_and(|n| n == "report") {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                out.extend(read(&path, since));
            } else {
                stack.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// A `new/` directory's estimate, if this run wrote it.
fn read(new: &Path, since: SystemTime) -> Option<Estimate> {
    let estimates: PathBuf = new.join("estimates.json");
    let fresh = std::fs::metadata(&estimates)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let meta = std::fs::read_to_string(new.join("benchmark.json")).ok()?;
    let text = std::fs::read_to_string(&estimates).ok()?;
    Some(Estimate {
        id: json_string(&meta, "full_id")?,
        median_ns: json_number(&text[text.find("\"median\"")?..], "point_estimate")?,
        elements: meta
            .find("\"Elements\":")
            .and_then(|at| json_number(&meta[at..], "Elements"))
            .map(|n| n as u64),
    })
}

/// The string after the first `"key":"`, read without a JSON dependency
/// (criterion's ids contain no escaped quotes).
fn json_string(text: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":\"");
    let start = text.find(&pattern)? + pattern.len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string())
}

/// The number after the first `"key":`.
fn json_number(text: &str, key: &str) -> Option<f64> {
    let pattern = format!("\"{key}\":");
    let start = text.find(&pattern)? + pattern.len();
    let len = text[start..].find([',', '}'])?;
    text[start..start + len].trim().parse().ok()
}

/// One printed row: measure, ours, peer name, peer, ratio, target.
pub fn rows(results: &[Estimate]) -> Vec<[String; 6]> {
    let find = |id: &str| results.iter().find(|e| e.id == id);
    let mut rows = Vec::new();
    for p in PAIRS {
        let Some(ours) = find(p.ours) else {
            continue;
        };
        let (name, peer) = match p.peer {
            Peer::Bench(id, name) => (name, find(id).map(Estimate::per_element)),
            Peer::Limit(ns, name) => (name, Some(ns)),
        };
        let ours_ns = ours.per_element();
        let ratio = peer.map_or("not run".into(), |peer| format!("{:.2}x", ours_ns / peer));
        rows.push([
            p.measure.to_string(),
            human_time(ours_ns),
            name.to_string(),
            peer.map_or("-".into(), human_time),
            ratio,
            p.target.to_string(),
        ]);
    }
    for e in results {
        let paired = PAIRS
            .iter()
            .any(|p| p.ours == e.id || matches!(p.peer, Peer::Bench(id, _) if id == e.id));
        if !paired {
            let unit = if e.elements.is_some() { "/element" } else { "" };
            rows.push([
                e.id.clone(),
                format!("{}{unit}", human_time(e.per_element())),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    rows
}

fn print_table(results: &[Estimate], wall: &[WallLine]) {
    let header = [
        "measure",
        "ours",
        "peer or limit",
        "peer",
        "ours/peer",
        "target",
    ];
    let mut rows = rows(results);
    // After the paired rows, before criterion's unpaired ones.
    let paired = rows.iter().take_while(|r| !r[2].is_empty()).count();
    rows.splice(paired..paired, wall_rows(wall));
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let [a, b, c, d, e, f] = cells;
        let [wa, wb, wc, wd, we, wf] = widths;
        println!("{a:<wa$}  {b:>wb$}  {c:<wc$}  {d:>wd$}  {e:>we$}  {f:<wf$}");
    };
    println!("\nMedians from this run (per page or per command where the bench counts them; wall-clock, so noisy on a loaded machine).");
    println!("Interleaved rows: the ring cases take turns on one device thread, 100 round trips each; the ratio is the median of the rounds' ratios.");
    line(header);
    println!("{}", "-".repeat(widths.iter().sum::<usize>() + 10));
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]].map(String::as_str));
    }
}

fn human_time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn quick_becomes_criterion_arguments_after_the_separator() {
        let base = ["bench", "--workspace", "--exclude", "xtask", "--bench", "*"];
        assert_eq!(cargo_args(&[]), strings(&base));
        let mut want = strings(&["bench", "--bench", "*", "-p", "dma-sg", "--"]);
        want.extend(strings(QUICK));
        want.push("sg_build".into());
        assert_eq!(
            cargo_args(&strings(&["--quick", "-p", "dma-sg", "--", "sg_build"])),
            want
        );
        let mut want = strings(&base);
        want.extend(strings(&["--", "--noplot"]));
        assert_eq!(cargo_args(&strings(&["--", "--noplot"])), want);
    }

    #[test]
    fn the_ring_interleaved_lines_become_rows_per_entry() {
        let text = "batch  1 ours: fastest   100.0 ns, median   110.0 ns per round trip; median round ratio 0.900 to rtrb, 1.050 to bare\n\
                    batch  1 bare: fastest    99.0 ns, median   105.0 ns per round trip; median round ratio 0.860 to rtrb, 1.000 to bare\n\
                    batch  1 rtrb: fastest   120.0 ns, median   122.0 ns per round trip; median round ratio 1.000 to rtrb, 1.160 to bare\n\
                    batch 32 ours: fastest   288.0 ns, median   320.0 ns per round trip; median round ratio 0.980 to rtrb, 1.010 to bare\n\
                    batch 32 bare: fastest   280.0 ns, median   316.8 ns per round trip; median round ratio 0.970 to rtrb, 1.000 to bare\n\
                    batch 32 rtrb: fastest   290.0 ns, median   326.4 ns per round trip; median round ratio 1.000 to rtrb, 1.030 to bare\n\
                    unrelated line\n";
        let lines = parse_wall(text);
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[3],
            WallLine {
                batch: 32,
                case: "ours".into(),
                median_ns: 320.0,
                to_rtrb: 0.98,
                to_bare: 1.01,
            }
        );
        let rows = wall_rows(&lines);
        assert_eq!(rows.len(), 6);
        let ours32 = &rows[3];
        assert_eq!(ours32[0], "ring round trip, 64 B, batch 32, interleaved");
        // Per entry: 320 ns per round trip of 32.
        assert_eq!(
            (ours32[1].as_str(), ours32[3].as_str()),
            ("10.00 ns", "10.20 ns")
        );
        assert_eq!(
            (ours32[4].as_str(), ours32[5].as_str()),
            ("0.98x", "<= 1.0x")
        );
        assert_eq!(rows[4][4], "1.01x");
        assert_eq!(rows[5][0], "bare phase-tag ring, batch 32, interleaved");
        // A batch with a case missing gives no rows.
        assert_eq!(wall_rows(&lines[..5]).len(), 3);
        assert!(wall_rows(&parse_wall("no figures")).is_empty());
    }

    /// A criterion output directory as criterion 0.5 writes it.
    fn write_result(root: &Path, dir: &str, full_id: &str, elements: Option<u64>, median: f64) {
        let new = root.join(dir).join("new");
        std::fs::create_dir_all(&new).unwrap();
        let throughput = elements.map_or("null".into(), |n| format!("{{\"Elements\":{n}}}"));
        std::fs::write(
            new.join("benchmark.json"),
            format!("{{\"group_id\":\"g\",\"throughput\":{throughput},\"full_id\":\"{full_id}\"}}"),
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            format!(
                "{{\"mean\":{{\"point_estimate\":999.0}},\"median\":{{\"confidence_interval\":{{}},\"point_estimate\":{median},\"standard_error\":1.0}}}}"
            ),
        )
        .unwrap();
    }

    #[test]
    fn the_table_pairs_results_of_this_run_per_element() {
        let root = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_result(
            &root,
            "map/checked",
            "map_sync_unmap_4k/checked",
            None,
            50.0,
        );
        write_result(&root, "map/direct", "map_sync_unmap_4k/direct", None, 5.0);
        write_result(
            &root,
            "sg/1",
            "sg_build_encode/build+prp/1MiB",
            Some(256),
            2560.0,
        );
        write_result(&root, "other", "other/bench", Some(4), 8.0);
        let results = collect(&root, SystemTime::UNIX_EPOCH);
        assert_eq!(results.len(), 4);
        let rows = rows(&results);
        let row = |measure: &str, peer: &str| {
            rows.iter()
                .find(|r| r[0] == measure && r[2] == peer)
                .unwrap_or_else(|| panic!("no row {measure} / {peer} in {rows:?}"))
                .clone()
        };
        let vs_bare = row("dma-check map+sync+unmap, 4 KiB", "bare direct platform");
        assert_eq!(vs_bare[1], "50.00 ns");
        assert_eq!(vs_bare[4], "10.00x");
        let vs_limit = row("dma-check map+sync+unmap, 4 KiB", "target 60 ns");
        assert_eq!(vs_limit[4], "0.83x");
        let sg = row("SG build + PRP, per page, 1 MiB", "target 5 ns/page");
        assert_eq!((sg[1].as_str(), sg[4].as_str()), ("10.00 ns", "2.00x"));
        assert_eq!(row("other/bench", "")[1], "2.00 ns/element");
        // Pairs whose benches did not run this time have no row.
        assert!(!rows.iter().any(|r| r[0].starts_with("ring")));
        // Results older than the run are left out.
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(collect(&root, later).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
