//===----------------------------------------------------------------------===//
// Apus LoadGen: `apus load`.
//===----------------------------------------------------------------------===//

/// Entry point for `apus load [options]` (issue 8 builds it out).
public enum LoadGenCommand {
    /// Runs the load generator with `arguments` (after `load`); returns the exit status.
    public static func run(_ arguments: [String]) -> Int32 {
        print("apus load: not available in this build")
        return 2
    }
}
