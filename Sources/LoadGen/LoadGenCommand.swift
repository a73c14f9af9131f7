//===----------------------------------------------------------------------===//
// Apus LoadGen: `apus load`.
//===----------------------------------------------------------------------===//

/// Entry point for `apus load [options]`: see ``LoadConfiguration/usage``.
public enum LoadGenCommand {
    /// Runs the load generator with `arguments` (after `load`); returns the exit status: 0 when the
    /// run saw no violation, 1 when it did (or could not write its outputs), 2 on a usage error.
    public static func run(_ arguments: [String]) -> Int32 {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(LoadConfiguration.usage)
            return 0
        }
        let configuration: LoadConfiguration
        do {
            configuration = try LoadConfiguration.parse(arguments)
        } catch {
            printError("apus load: \(error)")
            printError(LoadConfiguration.usage)
            return 2
        }
        let report: LoadReport
        do {
            report = try LoadRunner.run(configuration) { interval in
                if !configuration.quiet { print(LoadReportText.progressLine(interval)) }
            }
        } catch {
            printError("apus load: \(error)")
            return 2
        }
        print(LoadReportText.summary(report), terminator: "")
        var status: Int32 = report.totals.totalViolations > 0 ? 1 : 0
        if let path = configuration.jsonPath {
            if let failure = writeFile(path, LoadReportJSON.render(report)) {
                printError("apus load: cannot write \(path): \(failure)")
                status = 1
            }
        }
        if let path = configuration.plotPath {
            if let failure = writeFile(path, LoadPlot.render(report)) {
                printError("apus load: cannot write \(path): \(failure)")
                status = 1
            }
        }
        return status
    }
}
