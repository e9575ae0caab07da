//! The dashboard's palette: blue is blue and green is green everywhere;
//! red for failures and refusals, amber for what waits or is unsure.

use egui::{Color32, RichText};
use greenlight_common::Color;
use greenlight_verdict::Verdict;

pub const BLUE: Color32 = Color32::from_rgb(52, 120, 246);
pub const GREEN: Color32 = Color32::from_rgb(38, 166, 91);
pub(super) const RED: Color32 = Color32::from_rgb(220, 60, 50);
pub(super) const AMBER: Color32 = Color32::from_rgb(230, 160, 30);

pub fn color32(c: Color) -> Color32 {
    match c {
        Color::Blue => BLUE,
        Color::Green => GREEN,
    }
}

pub(super) fn color_text(c: Color) -> RichText {
    RichText::new(c.to_string()).color(color32(c)).strong()
}

pub(super) fn verdict_color(v: Verdict) -> Color32 {
    match v {
        Verdict::Pass => GREEN,
        Verdict::Fail => RED,
        Verdict::Inconclusive => AMBER,
    }
}
