// MIMELimits: every bound the MIME layer enforces, in one place.

/// Bounds that keep hostile or broken mail from costing unbounded memory, time or stack.
public enum MIMELimits {
    /// Parts nested deeper than this (multipart or message/rfc822 levels) are opaque leaves: their
    /// inside is body text. Dovecot uses the same figure.
    public static let maximumNestingDepth = 100
    /// Once a message has this many parts, further boundaries start no new part (their lines are
    /// body text of the part being read). Dovecot uses the same figure.
    public static let maximumPartCount = 10_000
    /// Addresses kept per message (all envelopes together); the rest of a huge list is dropped.
    public static let maximumAddressCount = 10_000
    /// Parameters kept per Content-Type or Content-Disposition field.
    public static let maximumParametersPerField = 100
    /// RFC 2231 continuation sections joined per parameter (`name*0` ... `name*N`).
    public static let maximumContinuationSections = 1_000
}
