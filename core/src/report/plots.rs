//! The report's PNG plots, drawn with plotters into memory and encoded with `png`.
//!
//! Text uses DejaVu Sans embedded in the binary (the `dejavu` crate), through
//! plotters' `ab_glyph` font backend: no system font or fontconfig is needed.

use std::error::Error as StdError;
use std::ops::Range;
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, SegmentValue, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

/// What drawing returns; plotters' errors are boxed.
pub(crate) type DrawResult<T> = std::result::Result<T, Box<dyn StdError>>;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(crate) const FONT: &str = "sans-serif";
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const GRID: RGBColor = RGBColor(150, 150, 150);
/// Tick labels, in pixels: readable at 100 % zoom.
const LABEL_SIZE: u32 = 16;
/// Axis titles, in pixels.
const DESC_SIZE: u32 = 18;

static REGISTER_FONT: Once = Once::new();

/// Registers the embedded font under plotters' `sans-serif` family, once.
pub(crate) fn ensure_font() {
    REGISTER_FONT.call_once(|| {
        // A failure leaves the family unregistered; drawing text then returns
        // plotters' "font unavailable" error, which the caller reports.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws with `draw` on a white `width` x `height` RGB canvas and encodes it as PNG.
fn render(width: u32, height: u32, draw: impl FnOnce(&Area) -> DrawResult<()>) -> DrawResult<Vec<u8>> {
    ensure_font();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer_and_format(&mut pixels, (width, height))?.into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    encode_rgb(&pixels, width, height)
}

/// `width` x `height` RGB pixels (8 bits, row-major) as PNG.
pub(crate) fn encode_rgb(pixels: &[u8], width: u32, height: u32) -> DrawResult<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

/// A line series cut into runs of finite points (NaN cells leave gaps).
struct Series {
    label: &'static str,
    color: RGBColor,
    runs: Vec<Vec<(f64, f64)>>,
}

impl Series {
    fn new(label: &'static str, color: RGBColor, x: &[f64], y: &[f64]) -> Self {
        let mut runs = vec![Vec::new()];
        for (&xi, &yi) in x.iter().zip(y) {
            if xi.is_finite() && yi.is_finite() {
                if let Some(run) = runs.last_mut() {
                    run.push((xi, yi));
                }
            } else if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
        }
        runs.retain(|r| !r.is_empty());
        Series { label, color, runs }
    }

    fn points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.runs.iter().flatten()
    }
}

/// Train (and validation) loss against epoch (`x_desc`: `epoch`, or
/// `iteration` for L-BFGS); log-y when all values are positive and either
/// `log` is set (the total loss) or they span more than a factor of 100. A
/// dashed grey line marks `best_epoch`.
pub(super) fn loss_png(
    title: &str,
    x_desc: &str,
    epochs: &[f64],
    train: &[f64],
    val: Option<&[f64]>,
    best_epoch: Option<f64>,
    log: bool,
) -> DrawResult<Vec<u8>> {
    let mut series = vec![Series::new("train", TRAIN, epochs, train)];
    if let Some(val) = val {
        series.push(Series::new("validation", VAL, epochs, val));
    }
    lines_png(title, x_desc, "loss", series, best_epoch, log)
}

/// One value per L-BFGS iteration (the objective, the largest gradient
/// entry), log-y as [`loss_png`] when `log`.
pub(super) fn iterations_png(
    title: &str,
    label: &'static str,
    iterations: &[f64],
    values: &[f64],
    log: bool,
) -> DrawResult<Vec<u8>> {
    lines_png(title, "iteration", label, vec![Series::new(label, TRAIN, iterations, values)], None, log)
}

fn lines_png(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    mut series: Vec<Series>,
    best_epoch: Option<f64>,
    log: bool,
) -> DrawResult<Vec<u8>> {
    series.retain(|s| !s.runs.is_empty());
    render(800, 480, |root| {
        let xs = series.iter().flat_map(Series::points).map(|p| p.0);
        let ys: Vec<f64> = series.iter().flat_map(Series::points).map(|p| p.1).collect();
        let (Some(x), Some((lo, hi))) = (padded(xs, 0.0), min_max(ys.iter().copied())) else {
            return message(root, title, &format!("no finite {y_desc} values"));
        };
        if lo > 0.0 && (log || hi / lo > 100.0) {
            // plotters labels too few ticks on a log axis spanning less than
            // two decades: widen a short range to two decades around its middle.
            let (lo, hi) = if hi / lo < 100.0 {
                let mid = (lo * hi).sqrt();
                ((mid / 10.0).min(lo), (mid * 10.0).max(hi))
            } else {
                (lo, hi)
            };
            let y = (lo / 1.25)..(hi * 1.25);
            let desc = format!("{y_desc} (log scale)");
            line_chart(root, title, (x, x_desc), (y.clone().log_scale(), &desc), y, &series, best_epoch)
        } else {
            let y = padded(ys.iter().copied(), 0.05).unwrap_or(0.0..1.0);
            line_chart(root, title, (x, x_desc), (y.clone(), y_desc), y, &series, best_epoch)
        }
    })
}

fn line_chart<Y>(
    root: &Area,
    title: &str,
    (x, x_desc): (Range<f64>, &str),
    (y_coord, y_desc): (Y, &str),
    y: Range<f64>,
    series: &[Series],
    best_epoch: Option<f64>,
) -> DrawResult<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = chart_builder(root, title).build_cartesian_2d(x.clone(), y_coord)?;
    numeric_mesh(&mut chart, x_desc, y_desc)?;
    if let Some(best) = best_epoch.filter(|b| (x.start..=x.end).contains(b)) {
        let style = ShapeStyle::from(&GRID).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(vec![(best, y.start), (best, y.end)], 6, 4, style))?
            .label(format!("best epoch ({})", tick(best)))
            .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], style));
    }
    for s in series {
        let color = s.color;
        for (i, run) in s.runs.iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
            if i == 0 {
                drawn.label(s.label).legend(move |(px, py)| {
                    PathElement::new(vec![(px, py), (px + 20, py)], color.stroke_width(2))
                });
            }
        }
        // Markers when few points, so a single epoch still shows.
        if s.points().count() <= 30 {
            chart.draw_series(s.points().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The confusion matrix as a heat map (shade = share of the true class's row),
/// each cell with its count; rows = true class, columns = predicted class.
pub(super) fn confusion_png(title: &str, classes: &[String], counts: &[Vec<f64>]) -> DrawResult<Vec<u8>> {
    ensure_font();
    let n = classes.len() as u32;
    let labels: Vec<String> = classes.iter().map(|c| shorten(c, 18)).collect();
    let label_font = (FONT, 14).into_font();
    let label_w =
        labels.iter().map(|l| label_font.box_size(l).map(|b| b.0)).try_fold(0, |m, w| w.map(|w| m.max(w)))?;
    let cell = (480 / n.max(1)).clamp(30, 72);
    let rotate = n > 1 && label_w + 6 > cell;
    let x_labels_h = if rotate { label_w + 8 } else { 24 };
    let left = 10 + 22 + 8 + label_w + 8;
    let top = 48;
    let grid = n * cell;
    let title_w = (FONT, 20).into_font().box_size(title)?.0;
    let width = (left + grid + 30).max(title_w + 40).max(360);
    let height = top + grid + 8 + x_labels_h + 30;
    render(width, height, |root| {
        root.draw(&Text::new(title, (width as i32 / 2, 22), centred(FONT, 20.0)))?;
        let (left, top, cell) = (left as i32, top as i32, cell as i32);
        let grid = grid as i32;
        let count_size = f64::from(cell.min(40)) * 0.38;
        for (i, row) in counts.iter().enumerate() {
            let total: f64 = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                let share = if total > 0.0 { count / total } else { 0.0 };
                let (x0, y0) = (left + j as i32 * cell, top + i as i32 * cell);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], shade(share).filled()))?;
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], GRID.stroke_width(1)))?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let style = centred(FONT, count_size).color(&ink);
                root.draw(&Text::new(count_label(count), (x0 + cell / 2, y0 + cell / 2), style))?;
            }
        }
        for (k, label) in labels.iter().enumerate() {
            let mid = k as i32 * cell + cell / 2;
            let row_style = TextStyle::from(label_font.clone()).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(label.as_str(), (left - 8, top + mid), row_style))?;
            let col_pos = (left + mid, top + grid + 8);
            if rotate {
                let style = TextStyle::from(label_font.clone().transform(FontTransform::Rotate270))
                    .pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(label.as_str(), col_pos, style))?;
            } else {
                let style = TextStyle::from(label_font.clone()).pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(label.as_str(), col_pos, style))?;
            }
        }
        let axis = centred(FONT, 16.0);
        let x_title_y = top + grid + 8 + x_labels_h as i32 + 12;
        root.draw(&Text::new("predicted", (left + grid / 2, x_title_y), axis.clone()))?;
        let rotated = TextStyle::from((FONT, 16).into_font().transform(FontTransform::Rotate270))
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new("true", (20, top + grid / 2), rotated))?;
        Ok(())
    })
}

/// Predicted against true values with the line y = x, their MAE and R² in
/// the legend; a note instead of points when there are none.
pub(super) fn pred_vs_true_png(title: &str, pairs: &[(f64, f64)]) -> DrawResult<Vec<u8>> {
    let scores = crate::metrics::regression(pairs, None);
    let label = format!("{} rows: {}", pairs.len(), parity_scores(&scores));
    render(640, 600, |root| {
        let Some(range) = padded(pairs.iter().flat_map(|&(t, p)| [t, p]), 0.05) else {
            return message(root, title, "no test rows with numeric true and predicted values");
        };
        let mut chart = chart_builder(root, title).build_cartesian_2d(range.clone(), range.clone())?;
        numeric_mesh(&mut chart, "true", "predicted")?;
        let diagonal = GRID.stroke_width(1);
        chart
            .draw_series(LineSeries::new(vec![(range.start, range.start), (range.end, range.end)], diagonal))?
            .label("y = x")
            .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 20, py)], diagonal));
        chart
            .draw_series(pairs.iter().map(|&p| Circle::new(p, 3, TRAIN.mix(0.6).filled())))?
            .label(label.as_str())
            .legend(|(px, py)| Circle::new((px + 10, py), 3, TRAIN.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// `MAE x, R² y` of a parity plot (`n/a` where undefined).
pub(super) fn parity_scores(m: &crate::metrics::RegressionMetrics) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), tick);
    format!("MAE {}, R² {}", f(m.mae), f(m.r2))
}

/// A chart with the report's caption, margins and axis label areas.
/// Draws the mesh of a chart with numeric axes in the report's style.
fn numeric_mesh<X, Y>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .draw()?;
    Ok(())
}

fn chart_builder<'a, 'b>(root: &'a Area<'b>, title: &str) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, (FONT, 20)).margin(15).x_label_area_size(55).y_label_area_size(85);
    builder
}

/// The series' legend, boxed, at `position`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// A title and a centred message, for a plot with nothing to show.
fn message(root: &Area, title: &str, text: &str) -> DrawResult<()> {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(title, (w as i32 / 2, 22), centred(FONT, 20.0)))?;
    root.draw(&Text::new(text, (w as i32 / 2, h as i32 / 2), centred(FONT, 16.0)))?;
    Ok(())
}

fn centred(font: &str, size: f64) -> TextStyle<'_> {
    TextStyle::from((font, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
}

/// White to blue.
fn shade(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let mix = |c: u8| (255.0 - t * (255.0 - f64::from(c))).round() as u8;
    RGBColor(mix(TRAIN.0), mix(TRAIN.1), mix(TRAIN.2))
}

fn count_label(count: f64) -> String {
    if count.fract() == 0.0 && count.abs() < 1e15 {
        format!("{count:.0}")
    } else {
        format!("{count:.2}")
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// Axis tick text: short, scientific for very small or large magnitudes.
fn tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The range of the finite `values`, widened by `pad` of its span on each
/// side (by 0.5, or 10 % of the value, when all are equal).
fn padded(values: impl Iterator<Item = f64>, pad: f64) -> Option<Range<f64>> {
    let (lo, hi) = min_max(values)?;
    let span = hi - lo;
    if span > 0.0 {
        Some((lo - pad * span)..(hi + pad * span))
    } else {
        let d = if lo == 0.0 { 0.5 } else { (lo.abs() * 0.1).max(0.5).min(lo.abs()) };
        Some((lo - d)..(hi + d))
    }
}

/// Line colours of [`xy_png`]'s series, in turn.
const PALETTE: [RGBColor; 6] = [
    TRAIN,
    VAL,
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Labelled `(x, y)` series as lines with markers (for sweep summaries such as
/// error against training fraction); non-finite points are left out.
pub(crate) fn xy_png(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<Vec<u8>, Box<dyn StdError>> {
    render(800, 480, |root| {
        let finite = || series.iter().flat_map(|s| &s.1).filter(|p| p.0.is_finite() && p.1.is_finite());
        let (Some(x), Some(y)) = (padded(finite().map(|p| p.0), 0.05), padded(finite().map(|p| p.1), 0.05))
        else {
            return message(root, title, "no finite values");
        };
        let mut chart = chart_builder(root, title).build_cartesian_2d(x, y)?;
        numeric_mesh(&mut chart, x_desc, y_desc)?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> =
                points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(px, py)| {
                    PathElement::new(vec![(px, py), (px + 20, py)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Labelled series of one value (or none: a gap) per category, as lines
/// with markers; the x axis is the categories in order, labelled with
/// them (turned upright when they do not fit side by side).
pub(crate) fn categories_png(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> DrawResult<Vec<u8>> {
    ensure_font();
    let n = categories.len().max(1);
    let label_font = (FONT, 14).into_font();
    let label_w = categories
        .iter()
        .map(|c| label_font.box_size(c).map(|b| b.0))
        .try_fold(0, |m, w| w.map(|w| m.max(w)))?;
    let width = (160 + n as u32 * (label_w + 24)).clamp(800, 1600);
    let slot = (width - 130) / n as u32;
    let upright = label_w + 8 > slot;
    let x_area = if upright { label_w + 40 } else { 45 };
    let height = 440 + x_area;
    render(width, height, |root| {
        draw_categories(root, title, x_desc, y_desc, categories, series, upright, x_area)
    })
}

#[allow(clippy::too_many_arguments)]
fn draw_categories(
    root: &Area,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
    upright: bool,
    x_area: u32,
) -> DrawResult<()> {
    let values = || series.iter().flat_map(|s| s.1.iter().flatten().copied()).filter(|v| v.is_finite());
    let Some(y_range) = padded(values(), 0.05) else {
        let (w, h) = root.dim_in_pixel();
        let centred =
            |size: f64| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(title, (w as i32 / 2, 22), centred(20.0)))?;
        root.draw(&Text::new("no finite values", (w as i32 / 2, h as i32 / 2), centred(16.0)))?;
        return Ok(());
    };
    // plotters' integer ranges hold both ends: `0..last` is `categories.len()` segments.
    let last = (categories.len() as i32 - 1).max(0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(x_area)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last).into_segmented(), y_range.clone())?;
    // Labels that do not fit side by side are drawn upright below the
    // axis (plotters misplaces rotated tick labels), reading upwards.
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) if !upright => {
            usize::try_from(*i).ok().and_then(|i| categories.get(i)).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(categories.len() + 1)
        .x_label_formatter(&label)
        .x_label_style((FONT, 14))
        .y_label_style((FONT, LABEL_SIZE))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE.mix(0.0))
        .axis_desc_style((FONT, DESC_SIZE))
        .draw()?;
    if upright {
        let style = TextStyle::from((FONT, 14).into_font().transform(FontTransform::Rotate270))
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (i, c) in categories.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(i as i32), y_range.start));
            root.draw(&Text::new(c.as_str(), (x, y + 10), style.clone()))?;
        }
    }
    for (k, (name, ys)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<(i32, f64)> = ys
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i as i32, v)))
            .collect();
        // Runs of neighbouring categories with a value; a missing one leaves a gap.
        let mut runs: Vec<Vec<(SegmentValue<i32>, f64)>> = Vec::new();
        for &(i, v) in &points {
            match runs.last_mut() {
                Some(run) if matches!(run.last(), Some((SegmentValue::CenterOf(j), _)) if *j + 1 == i) => {
                    run.push((SegmentValue::CenterOf(i), v))
                }
                _ => runs.push(vec![(SegmentValue::CenterOf(i), v)]),
            }
        }
        for (r, run) in runs.iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run.iter().cloned(), color.stroke_width(2)))?;
            if r == 0 {
                drawn.label(name.as_str()).legend(move |(px, py)| {
                    PathElement::new(vec![(px, py), (px + 20, py)], color.stroke_width(2))
                });
            }
        }
        chart.draw_series(
            points.iter().map(|&(i, v)| Circle::new((SegmentValue::CenterOf(i), v), 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}
