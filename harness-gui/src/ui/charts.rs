//! The central charts, two by two: requests/s, latency and TTFB over time,
//! latency by percentile, error rate. Each line keeps its color's color;
//! solid, dashed and dotted tell the series of one color apart.

use super::style::{BLUE, GREEN};
use crate::metrics::{nines_label, MetricsView, MAX_NINES};
use egui::{Color32, Ui};
use egui_plot::{
    AxisHints, Corner, GridMark, HoverPosition, Legend, Line, LineStyle, Plot, PlotPoint,
};

/// One line of a chart.
struct Series<'a> {
    name: &'static str,
    points: &'a [PlotPoint],
    color: Color32,
    style: LineStyle,
}

fn series<'a>(
    name: &'static str,
    points: &'a [PlotPoint],
    color: Color32,
    style: LineStyle,
) -> Series<'a> {
    Series {
        name,
        points,
        color,
        style,
    }
}

/// Width and height of one chart.
#[derive(Clone, Copy)]
struct ChartSize {
    width: f32,
    height: f32,
}

/// The four charts (empty until the load reports).
pub(super) fn ui(ui: &mut Ui, m: Option<&MetricsView>) {
    let empty = MetricsView::default();
    let m = m.unwrap_or(&empty);
    // Leave room for the titles and the x-axis labels of both rows.
    let size = ChartSize {
        height: ((ui.available_height() - 80.0) / 2.0).max(120.0),
        width: ((ui.available_width() - 12.0) / 2.0).max(200.0),
    };
    egui::Grid::new("charts")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            ui.vertical(|ui| {
                let lines = [
                    series("blue rps", &m.blue.rps, BLUE, LineStyle::Solid),
                    series("green rps", &m.green.rps, GREEN, LineStyle::Solid),
                ];
                chart(ui, "Requests/s per color", time_plot("rps", size), &lines);
            });
            ui.vertical(|ui| {
                chart(
                    ui,
                    "Latency p50 / p99 and TTFB p50 over time (ms)",
                    time_plot("latency", size),
                    &latency_lines(m),
                );
            });
            ui.end_row();
            ui.vertical(|ui| {
                let lines = [
                    series("blue", &m.blue.distribution, BLUE, LineStyle::Solid),
                    series("green", &m.green.distribution, GREEN, LineStyle::Solid),
                ];
                chart(
                    ui,
                    "Latency by percentile (ms)",
                    percentile_plot(size),
                    &lines,
                );
            });
            ui.vertical(|ui| {
                let lines = [
                    series("blue errors %", &m.blue.error_pct, BLUE, LineStyle::Solid),
                    series(
                        "green errors %",
                        &m.green.error_pct,
                        GREEN,
                        LineStyle::Solid,
                    ),
                ];
                let plot = time_plot("errors", size).include_y(1.0);
                chart(ui, "Error rate per color (%)", plot, &lines);
            });
            ui.end_row();
        });
}

/// Latency p50 (solid) and p99 (dashed) and TTFB p50 (dotted) per color.
fn latency_lines(m: &MetricsView) -> [Series<'_>; 6] {
    let (p99, ttfb) = (LineStyle::dashed_loose(), LineStyle::dotted_dense());
    [
        series("blue p50", &m.blue.p50_ms, BLUE, LineStyle::Solid),
        series("blue p99", &m.blue.p99_ms, BLUE, p99),
        series("green p50", &m.green.p50_ms, GREEN, LineStyle::Solid),
        series("green p99", &m.green.p99_ms, GREEN, p99),
        series("blue TTFB p50", &m.blue.ttfb_p50_ms, BLUE, ttfb),
        series("green TTFB p50", &m.green.ttfb_p50_ms, GREEN, ttfb),
    ]
}

/// A titled chart of `lines`, drawn in order (the legend's order).
fn chart(ui: &mut Ui, title: &str, plot: Plot<'_>, lines: &[Series<'_>]) {
    ui.label(title);
    plot.show(ui, |p| {
        for s in lines {
            p.line(
                Line::new(s.name.to_string(), s.points)
                    .color(s.color)
                    .style(s.style)
                    .width(1.5),
            );
        }
    });
}

/// A chart of `size` with its legend at the top left.
fn sized_plot(id: &str, size: ChartSize) -> Plot<'static> {
    Plot::new(id)
        .width(size.width)
        .height(size.height)
        .legend(Legend::default().position(Corner::LeftTop))
}

/// A chart over the run's seconds, from 0 up.
fn time_plot(id: &str, size: ChartSize) -> Plot<'static> {
    sized_plot(id, size).x_axis_label("s").include_y(0.0)
}

/// Latency by percentile: x counts the nines (0 %, 90 %, 99 %, ...).
fn percentile_plot(size: ChartSize) -> Plot<'static> {
    sized_plot("distribution", size)
        .include_x(0.0)
        .include_x(MAX_NINES)
        .include_y(0.0)
        .x_grid_spacer(|_| {
            (0..=MAX_NINES as i32)
                .map(|i| GridMark {
                    value: f64::from(i),
                    step_size: 1.0,
                })
                .collect()
        })
        // One label per nine (0 %, 90 %, 99 %, ...). egui_plot hides
        // x labels closer than 60 points by default: once data
        // arrives the y labels widen, the plot narrows and the
        // six labels would fall under that; they only need to fit.
        .custom_x_axes(vec![AxisHints::new_x()
            .formatter(|mark, _| nines_label(mark.value))
            .label_spacing(12.0..=20.0)])
        .label_formatter(|hp| {
            let (name, p) = match hp {
                HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                HoverPosition::Elsewhere { position } => ("", *position),
            };
            Some(format!("{name}\n{}: {:.2} ms", nines_label(p.x), p.y))
        })
}
