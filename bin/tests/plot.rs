//! Latency percentile plots from `bench --plot` and `echo-client plot`:
//! the SVG parses (Python's XML parser), has one line per series with every
//! point inside the picture, and renders to PNG with a real renderer
//! (`rsvg-convert`, Debian's librsvg2-bin, installed by `.ci/run`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-plot-{}-{name}", std::process::id()))
}

/// The polylines of an SVG with more than `min_points` points, each as its
/// point count, checked to lie inside the picture; from Python's parser.
fn lines(svg: &PathBuf, min_points: usize) -> Vec<usize> {
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
w, h = float(root.get("width")), float(root.get("height"))
for el in root.iter("{http://www.w3.org/2000/svg}polyline"):
    pts = [tuple(map(float, p.split(","))) for p in el.get("points").split()]
    if len(pts) > int(sys.argv[2]):
        assert all(0 <= x <= w and 0 <= y <= h for x, y in pts), "a point outside"
        assert all(a[0] <= b[0] for a, b in zip(pts, pts[1:])), "x not rising"
        print(len(pts))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(svg)
        .arg(min_points.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn render(svg: &PathBuf) {
    if !have("rsvg-convert") {
        return;
    }
    let png = svg.with_extension("png");
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn bench_plots_its_run_and_plot_compares_runs() {
    let server = Server::start(&[]);
    let connect = server.connect_arg();
    let (svg, a, b, both) = (
        temp("a.svg"),
        temp("a.hgrm"),
        temp("b.hgrm"),
        temp("ab.svg"),
    );
    for (connections, hgrm) in [("2", &a), ("8", &b)] {
        let mut args = vec!["bench", "--connect", &connect, "-c", connections];
        args.extend(["-d", "0.5", "-w", "0", "--hgrm", hgrm.to_str().unwrap()]);
        if connections == "2" {
            args.extend(["--plot", svg.to_str().unwrap()]);
        }
        let out = client(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(
        doc.contains("echo-client bench: 2 connections x 64 B"),
        "the title names the load"
    );
    assert_eq!(lines(&svg, 20).len(), 1, "one line for one run");
    render(&svg);
    let out = Command::new(CLIENT)
        .arg("plot")
        .args([&a, &b])
        .arg("-o")
        .arg(&both)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&both, 20).len(), 2, "one line per file");
    let doc = std::fs::read_to_string(&both).unwrap();
    let stem = |p: &PathBuf| p.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        doc.contains(&stem(&a)) && doc.contains(&stem(&b)),
        "a legend per file"
    );
    render(&both);
    for f in [svg, a, b, both] {
        let _ = std::fs::remove_file(f.with_extension("png"));
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn nothing_to_plot_is_a_clear_error() {
    let empty = temp("empty.hgrm");
    std::fs::write(&empty, "no percentiles here\n").unwrap();
    let out = Command::new(CLIENT)
        .args(["plot", empty.to_str().unwrap(), "-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no percentile lines"),
        "{}",
        text(&out.stderr)
    );
    let one = temp("one.hgrm");
    std::fs::write(&one, "10.000 1.000000000000 1 inf\n").unwrap();
    let out = Command::new(CLIENT)
        .args(["plot", one.to_str().unwrap(), "-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("fewer than two latencies"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(CLIENT)
        .args(["plot", "-o", "x.svg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no files: usage error");
    let out = Command::new(CLIENT)
        .args(["bench", "--plot", "/nonexistent/dir/x.svg", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot write /nonexistent/dir/x.svg"));
    let _ = std::fs::remove_file(empty);
    let _ = std::fs::remove_file(one);
}

#[test]
fn interval_series_plot_has_a_line_per_panel() {
    let server = Server::start(&[]);
    let svg = temp("series.svg");
    let connect = server.connect_arg();
    let out = client(&[
        "bench",
        "--connect",
        &connect,
        "-c",
        "2",
        "-d",
        "1.5",
        "-w",
        "0",
        "--interval",
        "0.25",
        "--plot-series",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found = lines(&svg, 3);
    assert_eq!(found.len(), 3, "requests/s, p99 and stall: {found:?}");
    assert!(
        found.iter().all(|&n| n >= 5),
        "a point per interval: {found:?}"
    );
    render(&svg);
    let _ = std::fs::remove_file(svg.with_extension("png"));
    let _ = std::fs::remove_file(&svg);
    let out = Command::new(CLIENT)
        .args(["bench", "--plot-series", "x.svg", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--plot-series needs --interval");
}
