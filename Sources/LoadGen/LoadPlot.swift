//===----------------------------------------------------------------------===//
// Apus LoadGen: a self-contained SVG of throughput and latency over time (`--plot FILE`).
//===----------------------------------------------------------------------===//

/// Two panels sharing the time axis: commands per second (total and the busiest commands), then
/// p50 and p99 latency. Plain SVG 1.1, no scripts or external files: any browser shows it.
enum LoadPlot {
    static let width = 960.0
    static let panelHeight = 260.0
    static let left = 70.0
    static let right = 170.0
    static let top = 40.0
    static let gap = 60.0
    static let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]

    static func render(_ report: LoadReport) -> String {
        let intervals = report.intervals
        let height = top + panelHeight * 2 + gap + 50
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        svg += "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        let configuration = report.configuration
        var title = "apus load \(configuration.mode.rawValue): \(configuration.host):\(configuration.port)"
        if !configuration.label.isEmpty { title += " (\(configuration.label))" }
        title += ", \(configuration.clients) clients, " + fixed(report.commandsPerSecond, 0) + " commands/s, "
        title += "\(report.totals.totalViolations) violations"
        svg += "<text x=\"\(left)\" y=\"22\" font-size=\"15\" font-weight=\"bold\">\(escape(title))</text>\n"
        let lastSecond = Double(max(1, intervals.last?.second ?? 1))

        // Throughput: total plus the four busiest commands.
        var series: [(String, [Double])] = [("all", intervals.map { Double($0.totalCompleted) })]
        let busiest = LoadCommandKind.allCases.filter { $0 != .connect }
            .map { kind in (kind, intervals.reduce(0) { $0 + $1.completed[kind.rawValue] }) }
            .filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }.prefix(4)
        for (kind, _) in busiest { series.append((kind.name, intervals.map { Double($0.completed[kind.rawValue]) })) }
        svg += panel(y: top, title: "commands per second", seconds: intervals.map { Double($0.second) },
                     lastSecond: lastSecond, series: series)

        let latency: [(String, [Double])] = [
            ("p50 ms", intervals.map { Double($0.latency.percentile(0.5)) / 1e6 }),
            ("p99 ms", intervals.map { Double($0.latency.percentile(0.99)) / 1e6 }),
        ]
        svg += panel(y: top + panelHeight + gap, title: "latency (ms)", seconds: intervals.map { Double($0.second) },
                     lastSecond: lastSecond, series: latency)
        svg += "<text x=\"\(left + (width - left - right) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">"
        svg += "seconds</text>\n</svg>\n"
        return svg
    }

    private static func panel(y: Double, title: String, seconds: [Double], lastSecond: Double,
                              series: [(String, [Double])]) -> String {
        let plotWidth = width - left - right
        let highest = series.flatMap(\.1).max() ?? 0
        let top = niceCeiling(highest)
        var svg = "<text x=\"\(left)\" y=\"\(fixed(y - 8, 1))\" font-weight=\"bold\">\(escape(title))</text>\n"
        svg += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(plotWidth)\" height=\"\(panelHeight)\" "
        svg += "fill=\"none\" stroke=\"#888\"/>\n"
        for step in 0...4 {
            let value = top * Double(step) / 4
            let lineY = y + panelHeight - panelHeight * Double(step) / 4
            svg += "<line x1=\"\(left)\" y1=\"\(fixed(lineY, 1))\" "
            svg += "x2=\"\(left + plotWidth)\" y2=\"\(fixed(lineY, 1))\" "
            svg += "stroke=\"#ddd\"/>\n<text x=\"\(left - 6)\" y=\"\(fixed(lineY + 4, 1))\" text-anchor=\"end\">"
            svg += label(value) + "</text>\n"
        }
        for step in 0...5 {
            let second = lastSecond * Double(step) / 5
            let x = left + plotWidth * second / lastSecond
            svg += "<text x=\"\(fixed(x, 1))\" y=\"\(fixed(y + panelHeight + 16, 1))\" text-anchor=\"middle\">"
            svg += fixed(second, 0) + "</text>\n"
        }
        for (index, (name, values)) in series.enumerated() {
            let color = colors[index % colors.count]
            let points = zip(seconds, values).map { second, value in
                fixed(left + plotWidth * second / lastSecond, 1) + ","
                    + fixed(y + panelHeight - (top > 0 ? panelHeight * value / top : 0), 1)
            }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(index == 0 ? 2 : 1.2)\" "
            svg += "points=\"\(points.joined(separator: " "))\"/>\n"
            let legendY = y + 14 + Double(index) * 18
            svg += "<line x1=\"\(left + plotWidth + 12)\" y1=\"\(fixed(legendY - 4, 1))\" "
            svg += "x2=\"\(left + plotWidth + 32)\" "
            svg += "y2=\"\(fixed(legendY - 4, 1))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            svg += "<text x=\"\(left + plotWidth + 38)\" y=\"\(fixed(legendY, 1))\">\(escape(name))</text>\n"
        }
        return svg
    }

    /// 1, 2 or 5 times a power of ten, at least `value`.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        var magnitude = 1.0
        while magnitude * 10 <= value { magnitude *= 10 }
        while magnitude > value { magnitude /= 10 }
        for factor in [1.0, 2.0, 5.0, 10.0] where factor * magnitude >= value { return factor * magnitude }
        return 10 * magnitude
    }

    private static func label(_ value: Double) -> String {
        value >= 100 || value == value.rounded() ? fixed(value, 0) : fixed(value, value >= 1 ? 1 : 3)
    }

    static func escape(_ text: String) -> String {
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            default: result.append(character)
            }
        }
        return result
    }
}
