//! Portico's PDF renderer: Typst compiled in-process (no external tools, no network packages),
//! with the fonts bundled in the binary and the templates in `templates/`. Output is PDF/A-2b and
//! deterministic for the same data: the document date is the lot's, not the clock's.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use portico_core::{CertificateData, CertificateRenderer, Error, Lot, Product, QcTest, Result};
use typst::foundations::{Datetime, Dict, IntoValue, Smart};
use typst_as_lib::TypstEngine;
use typst_as_lib::typst_kit_options::TypstKitFontOptions;
use typst_pdf::{PdfOptions, PdfStandard, PdfStandards, Timestamp};

const CERTIFICATE: &str = include_str!("../templates/certificate.typ");

/// Renders Certificates of Analysis. Loading the fonts takes a moment, so the engine is built on
/// first use and kept.
#[derive(Default, Clone)]
pub struct Pdf {
    engine: Arc<OnceLock<TypstEngine<typst_as_lib::TypstTemplateMainFile>>>,
}

impl Pdf {
    pub fn new() -> Self {
        Self::default()
    }

    fn engine(&self) -> &TypstEngine<typst_as_lib::TypstTemplateMainFile> {
        self.engine.get_or_init(|| {
            TypstEngine::builder()
                .main_file(CERTIFICATE)
                .search_fonts_with(
                    // Bundled fonts first; system fonts only add scripts they lack (CJK).
                    TypstKitFontOptions::default()
                        .include_system_fonts(true)
                        .include_embedded_fonts(true),
                )
                .build()
        })
    }

    /// The certificate as PDF bytes (blocking: call it off the async workers).
    pub fn render_certificate(
        &self,
        data: &CertificateData,
    ) -> std::result::Result<Vec<u8>, String> {
        let json = serde_json::to_string(data).map_err(|e| e.to_string())?;
        let mut inputs = Dict::new();
        inputs.insert("data".into(), json.into_value());
        let document = self
            .engine()
            .compile_with_input(inputs)
            .output
            .map_err(|e| format!("the certificate template failed: {e:?}"))?;
        let (year, month, day) =
            date_parts(&data.issued_on).ok_or("issued_on must be YYYY-MM-DD")?;
        let options = PdfOptions {
            ident: Smart::Custom(format!("portico-coa-{}", data.lot.lot_number)),
            timestamp: Datetime::from_ymd(year, month, day).map(Timestamp::new_utc),
            standards: PdfStandards::new(&[PdfStandard::A_2b]).map_err(|e| format!("{e:?}"))?,
            ..PdfOptions::default()
        };
        typst_pdf::pdf(&document, &options).map_err(|e| format!("writing the PDF failed: {e:?}"))
    }
}

fn date_parts(date: &str) -> Option<(i32, u8, u8)> {
    let mut parts = date.splitn(3, '-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[async_trait]
impl CertificateRenderer for Pdf {
    async fn certificate(&self, data: &CertificateData) -> Result<Vec<u8>> {
        let (pdf, data) = (self.clone(), data.clone());
        tokio::task::spawn_blocking(move || pdf.render_certificate(&data))
            .await
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("render task failed: {e}")))?
            .map_err(|e| Error::Unexpected(anyhow::anyhow!(e)))
    }
}

/// A Certificate of Analysis for one lot with `rows` QC tests (a page holds about 25), for
/// benchmarks and tests.
pub fn sample_certificate(rows: usize) -> CertificateData {
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    CertificateData {
        issuer: "Portico Life Sciences".into(),
        issued_on: "2026-11-27".into(),
        product: Product {
            sku: "RGT-100".into(),
            name: "Taq Polymerase".into(),
            category: "Enzymes".into(),
            created_at: epoch,
        },
        lot: Lot {
            lot_number: "L2026-0042".into(),
            sku: "RGT-100".into(),
            manufactured_on: "2026-10-01".into(),
            expires_on: "2028-10-01".into(),
            qc_tests: (0..rows)
                .map(|i| QcTest {
                    name: format!("Purity test {i}"),
                    method: "HPLC".into(),
                    specification: "≥ 98.0 %".into(),
                    result: "99.2".into(),
                    unit: "%".into(),
                    pass: true,
                })
                .collect(),
            created_at: epoch,
            recall: None,
        },
        audit: Some(portico_core::ports::AuditRef {
            seq: 42,
            at: "2026-11-27T09:30:00Z".into(),
            digest: "9f2c41d07be35a886a1e3c0d2b7f65e4aa0193c5d8e7f6a1b2c3d4e5f6a7b8c9".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample certificate with a product name and QC test names that try to inject Typst
    /// markup, and some failed tests.
    fn data(rows: usize, name: &str) -> CertificateData {
        let mut data = sample_certificate(rows);
        data.product.name = name.into();
        for (i, test) in data.lot.qc_tests.iter_mut().enumerate() {
            test.name = format!("Test {i} #[set text(red)] $x$");
            test.pass = i % 7 != 3;
        }
        data
    }

    /// Page count (parsed with lopdf) and text (extracted with poppler's `pdftotext`, which
    /// reads Typst's ToUnicode maps; `.ci/run` installs it).
    fn text_of(pdf: &[u8]) -> (usize, String) {
        use std::io::Write;
        let doc = lopdf::Document::load_mem(pdf).expect("a PDF");
        let pages = doc.get_pages().len();
        let mut child = std::process::Command::new("pdftotext")
            .args(["-layout", "-", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("pdftotext (Debian package poppler-utils) is installed");
        child.stdin.take().expect("stdin").write_all(pdf).expect("written");
        let out = child.wait_with_output().expect("pdftotext ran");
        (pages, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn a_one_page_certificate_with_the_lot_on_it() {
        let pdf =
            Pdf::new().render_certificate(&data(10, "Taq Polymerase Größe")).expect("rendered");
        assert!(pdf.starts_with(b"%PDF-"));
        let (pages, text) = text_of(&pdf);
        assert_eq!(pages, 1);
        for needle in [
            "L2026-0042",
            "RGT-100",
            "Certificate of Analysis",
            "Größe",
            "HPLC",
            "audit record #42",
            "9f2c41d07be35a88",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        // Markup in the data is printed, not interpreted.
        assert!(text.contains("#[set text(red)]"), "{text}");
        // Deterministic for the same data.
        assert_eq!(
            pdf,
            Pdf::new().render_certificate(&data(10, "Taq Polymerase Größe")).expect("again")
        );
    }

    #[test]
    fn a_recalled_lot_says_so_with_its_reason() {
        let mut recalled = data(3, "Taq Polymerase");
        recalled.lot.recall = Some(portico_core::Recall {
            reason: "Endotoxin #[above] limit".into(),
            recalled_by: "u-admin".into(),
            recalled_at: time::macros::datetime!(2026-12-01 10:00 UTC),
        });
        let (_, text) = text_of(&Pdf::new().render_certificate(&recalled).expect("rendered"));
        for needle in ["RECALLED", "2026-12-01", "Endotoxin #[above] limit"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let (_, plain) = text_of(&Pdf::new().render_certificate(&data(3, "Taq")).expect("plain"));
        assert!(!plain.contains("RECALLED"), "{plain}");
    }

    #[test]
    fn one_test_is_spoken_of_as_one() {
        let (_, one) = text_of(&Pdf::new().render_certificate(&data(1, "Buffer")).expect("one"));
        assert!(one.contains("The test meets its specification"), "{one}");
        let (_, many) = text_of(&Pdf::new().render_certificate(&data(3, "Buffer")).expect("3"));
        assert!(many.contains("All 3 tests meet their specifications"), "{many}");
    }

    #[test]
    fn two_hundred_rows_break_across_pages() {
        let pdf = Pdf::new().render_certificate(&data(200, "Long product")).expect("rendered");
        let (pages, text) = text_of(&pdf);
        assert!(pages >= 4, "{pages} pages");
        assert!(text.contains("Test 199"));
        // The table header repeats on every page.
        assert!(
            text.matches("Specification").count() >= pages,
            "{}",
            text.matches("Specification").count()
        );
    }
}
