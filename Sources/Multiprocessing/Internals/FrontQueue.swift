/// An array consumed from the front in constant time: elements are appended
/// at the back and taken at the front, and the storage is compacted once
/// most of it has been taken. A taken element is released at once.
struct FrontQueue<Element> {
    private var storage: [Element?] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }
    var first: Element? { isEmpty ? nil : storage[head] }
    /// What is left, front first.
    var remaining: [Element] { storage[head...].map { $0! } }

    /// The element `offset` places from the front.
    subscript(offset: Int) -> Element {
        get { storage[head + offset]! }
        set { storage[head + offset] = newValue }
    }

    mutating func append(_ element: Element) {
        storage.append(element)
    }

    /// Puts `elements` at the front, in their order.
    mutating func prepend(contentsOf elements: [Element]) {
        if head >= elements.count {
            head -= elements.count
            for (offset, element) in elements.enumerated() { storage[head + offset] = element }
        } else {
            storage.insert(contentsOf: elements.map(Optional.some), at: head)
        }
    }

    /// Keeps only the elements that `keep` accepts, in order.
    mutating func filter(_ keep: (Element) -> Bool) {
        storage = storage[head...].filter { keep($0!) }
        head = 0
    }

    @discardableResult
    mutating func removeFirst() -> Element {
        let element = storage[head]!
        storage[head] = nil
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }
}
