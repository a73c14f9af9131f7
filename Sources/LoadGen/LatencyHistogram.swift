//===----------------------------------------------------------------------===//
// Apus LoadGen: a log-bucket latency histogram (fixed memory, no allocation per sample).
//===----------------------------------------------------------------------===//

/// Counts of nanosecond latencies in logarithmic buckets: exact below 32 ns, then 32 buckets per
/// power of two, so a bucket is at most 1/32 (3.1%) of its lower bound wide. Recording is an index
/// computation and an increment; percentiles walk the buckets.
///
/// A reported percentile is the midpoint of the bucket holding the sample of that rank (clamped to
/// the recorded minimum and maximum), so it is within half a bucket width, 1/64 of the value, of the
/// exact nearest-rank percentile.
public struct LatencyHistogram: Sendable, Equatable {
    /// Sub-buckets per power of two, as a power of two.
    static let subBucketBits = 5
    static let subBucketCount = 1 << subBucketBits
    /// Buckets covering every UInt64: 32 exact ones, then 32 per octave from 2^5 to 2^63.
    static let bucketCount = (64 - subBucketBits + 1) * subBucketCount

    /// Samples per bucket (see ``bucketIndex(_:)``).
    public private(set) var buckets: [UInt64]
    /// Samples recorded.
    public private(set) var count: UInt64 = 0
    /// Their sum in nanoseconds (for the mean).
    public private(set) var sum: UInt64 = 0
    /// The smallest and largest sample, exact.
    public private(set) var minimum: UInt64 = .max
    public private(set) var maximum: UInt64 = 0

    /// An empty histogram (about 15 kB of buckets, allocated once).
    public init() { buckets = [UInt64](repeating: 0, count: LatencyHistogram.bucketCount) }

    /// The bucket of `value`.
    @inline(__always)
    static func bucketIndex(_ value: UInt64) -> Int {
        if value < UInt64(subBucketCount) { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount
        let shift = exponent - subBucketBits
        let sub = Int(truncatingIfNeeded: value >> UInt64(shift)) & (subBucketCount - 1)
        return (shift + 1) * subBucketCount + sub
    }

    /// The smallest value of bucket `index`, and its width.
    static func bucketRange(_ index: Int) -> (lower: UInt64, width: UInt64) {
        if index < subBucketCount { return (UInt64(index), 1) }
        let shift = index / subBucketCount - 1
        let sub = UInt64(index % subBucketCount)
        return ((UInt64(subBucketCount) + sub) << UInt64(shift), 1 << UInt64(shift))
    }

    /// Records one latency in nanoseconds.
    @inline(__always)
    public mutating func record(_ nanoseconds: UInt64) {
        buckets[LatencyHistogram.bucketIndex(nanoseconds)] &+= 1
        count &+= 1
        sum &+= nanoseconds
        if nanoseconds < minimum { minimum = nanoseconds }
        if nanoseconds > maximum { maximum = nanoseconds }
    }

    /// Adds another histogram's samples.
    public mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        for index in 0..<buckets.count where other.buckets[index] != 0 { buckets[index] &+= other.buckets[index] }
        count &+= other.count
        sum &+= other.sum
        minimum = min(minimum, other.minimum)
        maximum = max(maximum, other.maximum)
    }

    /// Forgets every sample, keeping the storage.
    public mutating func reset() {
        guard count > 0 else { return }
        for index in 0..<buckets.count { buckets[index] = 0 }
        count = 0
        sum = 0
        minimum = .max
        maximum = 0
    }

    /// The nearest-rank percentile `quantile` (0...1) in nanoseconds; 0 when empty.
    public func percentile(_ quantile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        if quantile >= 1 { return maximum }
        let clamped = max(0, quantile)
        var rank = UInt64((clamped * Double(count)).rounded(.up))
        if rank == 0 { rank = 1 }
        var seen: UInt64 = 0
        for index in 0..<buckets.count {
            seen &+= buckets[index]
            if seen >= rank {
                let (lower, width) = LatencyHistogram.bucketRange(index)
                let middle = lower &+ (width - 1) / 2
                return min(max(middle, minimum), maximum)
            }
        }
        return maximum
    }

    /// Mean in nanoseconds; 0 when empty.
    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }
}
