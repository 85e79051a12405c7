//! Certificate rendering, in-process, beside Ghostscript turning an equivalent PostScript page
//! into a PDF (one process per document, as the original system ran it).

use std::time::{Duration, Instant};

use portico_core::CertificateData;
use portico_pdf::{Pdf, sample_certificate as data};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 200)]
    one_page: usize,
    #[arg(long, default_value_t = 30)]
    ten_pages: usize,
    /// Seconds of rendering one-page certificates on every core.
    #[arg(long, default_value_t = 5)]
    throughput_secs: u64,
    #[arg(long, default_value_t = 20)]
    ghostscript: usize,
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!("| {name} | {} | {:.1} | {:.1} | {:.1} |", ms.len(), at(0.5), at(0.99), at(1.0));
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let pdf = Pdf::new();
    let one = data(10);
    let ten = data(430);
    let first = Instant::now();
    let sample = pdf.render_certificate(&one).map_err(anyhow::Error::msg)?;
    println!("machine: {} cores; {}", crate::http::cores(), crate::http::cpu_model());
    println!(
        "first render (loads fonts): {:.1} ms, {} bytes",
        first.elapsed().as_secs_f64() * 1000.0,
        sample.len()
    );
    println!();
    println!("| what | runs | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    // Every run renders different data (its own lot number), so Typst's memoisation cannot
    // replay an earlier run.
    let time = |d: &CertificateData, n: usize| -> anyhow::Result<Vec<f64>> {
        (0..n)
            .map(|i| {
                let mut d = d.clone();
                d.lot.lot_number = format!("L2026-{i:05}");
                let t = Instant::now();
                pdf.render_certificate(&d).map_err(anyhow::Error::msg)?;
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            })
            .collect()
    };
    stats("certificate, 1 page (10 QC rows)", time(&one, args.one_page)?);
    let pages = lopdf_pages(&pdf.render_certificate(&ten).map_err(anyhow::Error::msg)?);
    stats(&format!("certificate, {pages} pages (430 QC rows)"), time(&ten, args.ten_pages)?);
    if args.ghostscript > 0 {
        match ghostscript(args.ghostscript) {
            Ok(ms) => stats("Ghostscript: 1 PostScript page -> PDF (process per document)", ms),
            Err(e) => println!("| Ghostscript | - | not run: {e} | | |"),
        }
    }

    let threads = crate::http::cores();
    let deadline = Instant::now() + Duration::from_secs(args.throughput_secs);
    let started = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (pdf, one) = (pdf.clone(), one.clone());
                scope.spawn(move || {
                    let mut n = 0;
                    let mut d = one.clone();
                    while Instant::now() < deadline {
                        d.lot.lot_number = format!("T{:?}-{n}", std::thread::current().id());
                        if pdf.render_certificate(&d).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    println!();
    println!(
        "throughput: {total} one-page certificates in {:.1} s on {threads} threads: {:.0} PDFs/s",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn lopdf_pages(pdf: &[u8]) -> usize {
    lopdf::Document::load_mem(pdf).map(|d| d.get_pages().len()).unwrap_or(0)
}

/// A PostScript page with the same content as the one-page certificate, through `gs`.
fn ghostscript(runs: usize) -> anyhow::Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let ps = dir.path().join("certificate.ps");
    let mut page = String::from(
        "%!PS\n/Times-Bold findfont 18 scalefont setfont 160 780 moveto (Certificate of Analysis) show\n/Times-Roman findfont 10 scalefont setfont\n",
    );
    for (i, line) in [
        "Product: Taq Polymerase   SKU: RGT-100",
        "Lot: L2026-0042   Manufactured: 2026-10-01   Expires: 2028-10-01",
    ]
    .iter()
    .enumerate()
    {
        page.push_str(&format!("60 {} moveto ({line}) show\n", 740 - i * 16));
    }
    for row in 0..10 {
        page.push_str(&format!(
            "60 {y} moveto (Purity test {row}) show 200 {y} moveto (HPLC) show 290 {y} moveto (>= 98.0 %) show 390 {y} moveto (99.2) show 450 {y} moveto (%) show 500 {y} moveto (Pass) show\n",
            y = 680 - row * 16
        ));
    }
    page.push_str("60 420 moveto (All 10 tests meet their specifications.) show\nshowpage\n");
    std::fs::write(&ps, page)?;
    let out = dir.path().join("out.pdf");
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let status = std::process::Command::new("gs")
                .args(["-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pdfwrite"])
                .arg(format!("-sOutputFile={}", out.display()))
                .arg(&ps)
                .status()?;
            if !status.success() {
                anyhow::bail!("gs failed: {status}");
            }
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}
