//===----------------------------------------------------------------------===//
// Apus Telemetry: JSON string literals for the JSON the services and the load generator write.
//===----------------------------------------------------------------------===//

/// Text for JSON documents (status, load reports).
public enum JSONText {
    /// `text` as a JSON string literal (RFC 8259 section 7): quotes, backslashes and control
    /// characters escaped, everything else as it is.
    public static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
