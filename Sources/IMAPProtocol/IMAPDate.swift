// IMAPProtocol: dates (SEARCH SINCE/BEFORE/ON) and date-times (APPEND, INTERNALDATE).

/// A calendar date as IMAP writes it: `1-Feb-1994` (RFC 9051 section 9, "date").
public struct IMAPDate: Equatable, Sendable {
    // Narrow storage keeps parsed commands small (they are returned by value on the hot path).
    private var storedYear: UInt16
    private var storedMonth: UInt8
    private var storedDay: UInt8

    public var year: Int { Int(storedYear) }
    /// 1 to 12.
    public var month: Int { Int(storedMonth) }
    /// 1 to 31.
    public var day: Int { Int(storedDay) }

    public init(year: Int, month: Int, day: Int) {
        storedYear = UInt16(clamping: year)
        storedMonth = UInt8(clamping: month)
        storedDay = UInt8(clamping: day)
    }

    static let monthNames: [StaticString] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ]
    static let monthNamesMixedCase: [StaticString] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
}

/// A date and time with zone: `"17-Jul-1996 02:44:25 -0700"` (RFC 9051 section 9, "date-time").
public struct IMAPDateTime: Equatable, Sendable {
    public var date: IMAPDate
    private var storedHour: UInt8
    private var storedMinute: UInt8
    private var storedSecond: UInt8
    private var storedZone: Int16

    public var hour: Int { Int(storedHour) }
    public var minute: Int { Int(storedMinute) }
    public var second: Int { Int(storedSecond) }
    /// Offset from UTC in minutes (`-0700` is -420).
    public var zoneMinutes: Int { Int(storedZone) }

    public init(date: IMAPDate, hour: Int, minute: Int, second: Int, zoneMinutes: Int) {
        self.date = date
        storedHour = UInt8(clamping: hour)
        storedMinute = UInt8(clamping: minute)
        storedSecond = UInt8(clamping: second)
        storedZone = Int16(clamping: zoneMinutes)
    }
}

extension IMAPOutputBuffer {
    // date-text = date-day "-" date-month "-" date-year
    /// Appends `date` as `1-Feb-1994`.
    public mutating func write(date: IMAPDate) {
        write(number: date.day)
        write(byte: UInt8(ascii: "-"))
        write(IMAPDate.monthNamesMixedCase[max(0, min(11, date.month - 1))])
        write(byte: UInt8(ascii: "-"))
        writePadded(date.year, digits: 4)
    }

    // date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
    /// Appends `value` as `"17-Jul-1996 02:44:25 -0700"`.
    public mutating func write(dateTime value: IMAPDateTime) {
        write(byte: UInt8(ascii: "\""))
        if value.date.day < 10 { write(byte: 0x20) }
        write(date: value.date)
        write(byte: 0x20)
        writePadded(value.hour, digits: 2)
        write(byte: UInt8(ascii: ":"))
        writePadded(value.minute, digits: 2)
        write(byte: UInt8(ascii: ":"))
        writePadded(value.second, digits: 2)
        write(byte: 0x20)
        write(byte: value.zoneMinutes < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        let zone = abs(value.zoneMinutes)
        writePadded(zone / 60 * 100 + zone % 60, digits: 4)
        write(byte: UInt8(ascii: "\""))
    }

    mutating func writePadded(_ value: Int, digits: Int) {
        var divisor = 1
        for _ in 1..<digits { divisor *= 10 }
        var rest = max(0, value)
        while divisor > 0 {
            write(byte: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: (rest / divisor) % 10))
            rest %= divisor * 10
            divisor /= 10
        }
    }
}

extension IMAPParser {
    // date = date-text / DQUOTE date-text DQUOTE
    mutating func date() -> IMAPDate? {
        let isQuoted = skip(UInt8(ascii: "\""))
        guard let date = dateText(fixedDay: false) else { return nil }
        if isQuoted { guard expect(UInt8(ascii: "\""), "Unterminated date") != nil else { return nil } }
        return date
    }

    // date-text = date-day "-" date-month "-" date-year
    // date-day = 1*2DIGIT;  date-day-fixed = (SP DIGIT) / 2DIGIT;  date-year = 4DIGIT
    mutating func dateText(fixedDay: Bool) -> IMAPDate? {
        if fixedDay { _ = skip(0x20) }
        guard let day = digits(minimum: 1, maximum: 2), skip(UInt8(ascii: "-")) else { return fail("Invalid date") }
        guard position + 3 <= end else { return fail("Invalid date") }
        let name = view(position, position + 3)
        guard let month = IMAPDate.monthNames.firstIndex(where: { name.equalsCaseInsensitive($0) }) else {
            return fail("Invalid month in date")
        }
        position += 3
        guard skip(UInt8(ascii: "-")), let year = digits(minimum: 4, maximum: 4) else { return fail("Invalid date") }
        guard day >= 1 && day <= 31 else { return fail("Invalid day in date") }
        return IMAPDate(year: year, month: month + 1, day: day)
    }

    // date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
    // time = 2DIGIT ":" 2DIGIT ":" 2DIGIT;  zone = ("+" / "-") 4DIGIT
    mutating func dateTime() -> IMAPDateTime? {
        guard skip(UInt8(ascii: "\"")), let date = dateText(fixedDay: true), skip(0x20),
            let hour = digits(minimum: 2, maximum: 2), skip(UInt8(ascii: ":")),
            let minute = digits(minimum: 2, maximum: 2), skip(UInt8(ascii: ":")),
            let second = digits(minimum: 2, maximum: 2), skip(0x20)
        else { return fail("Invalid date-time") }
        let sign: Int
        if skip(UInt8(ascii: "+")) {
            sign = 1
        } else if skip(UInt8(ascii: "-")) {
            sign = -1
        } else {
            return fail("Invalid zone in date-time")
        }
        guard let zone = digits(minimum: 4, maximum: 4), skip(UInt8(ascii: "\"")) else {
            return fail("Invalid date-time")
        }
        guard hour < 24, minute < 60, second < 61, zone % 100 < 60 else { return fail("Invalid time in date-time") }
        return IMAPDateTime(
            date: date, hour: hour, minute: minute, second: second,
            zoneMinutes: sign * (zone / 100 * 60 + zone % 100))
    }

    mutating func digits(minimum: Int, maximum: Int) -> Int? {
        var value = 0
        var count = 0
        while count < maximum, let byte = peek(), IMAPByteClass.isDigit(byte) {
            value = value * 10 + Int(byte - 0x30)
            count += 1
            position += 1
        }
        return count >= minimum ? value : nil
    }
}
