import Testing
@testable import Recur

// The one description of the recurrent step kernels' operands (OpenCLStepKernels.swift): the host
// fills it by name, the kernels' parameter lists are generated from it, and a disagreement between
// the two fails with the operand's name instead of a wrong result.

@Suite("OpenCL step kernel operands")
struct OpenCLStepKernelTests {
    /// A value of the right kind for every operand of `operands`, one per direction where the
    /// kernel takes one per direction, except the names in `leaving`.
    static func values(for operands: StepKernelOperands, directions: Int, leaving: Set<String> = [],
                       tensor: Tensor) -> StepKernelArguments {
        var values = StepKernelArguments()
        for operand in operands.operands where !leaving.contains(operand.name) {
            let value: KernelArgument = switch operand.kind {
            case .buffer, .readOnlyBuffer, .intBuffer, .gridSync: .tensor(tensor)
            case .int: .int(1)
            case .float: .float(0.5)
            }
            if operand.perDirection {
                values.set(operand.name, each: Array(repeating: value, count: directions))
            } else {
                values.set(operand.name, value)
            }
        }
        return values
    }

    /// The `RecurError.invalidArgument` detail `body` throws, or nil.
    static func detail(_ body: () throws -> Void) -> String? {
        do {
            try body()
        } catch RecurError.invalidArgument(_, let detail) {
            return detail
        } catch {
            return "unexpected \(error)"
        }
        return nil
    }

    @Test("every cell's kernels take every operand they are given, in description order",
          arguments: RecurrentCell.withOpenCLKernels)
    func completeArguments(cell: RecurrentCell) throws {
        let kernels = try OpenCLCellKernels.of(cell)
        let tensor = try CPUBackend().zeros([1])
        for operands in [kernels.forward, kernels.backward] {
            for directions in 1...2 {
                let values = Self.values(for: operands, directions: directions, tensor: tensor)
                let resolved = try operands.arguments(values, directions: directions)
                let expected = operands.operands.reduce(0) { $0 + ($1.perDirection ? 2 : 1) }
                #expect(resolved.list.count == expected)
            }
            // The parameter list names each per-direction operand twice and the others once.
            let macros = operands.macros(prefix: "RECUR_TEST")
            for operand in operands.operands {
                let declared = operand.perDirection ? ["\(operand.name)0", "\(operand.name)1"] : [operand.name]
                for name in declared {
                    #expect(macros.contains("\(operand.declaredType) \(name),")
                        || macros.contains("\(operand.declaredType) \(name)\n"), "\(name) in \(operands.kernel)")
                }
            }
        }
    }

    @Test("a missing, misplaced or mistyped argument fails before launch, naming the argument")
    func mismatchNamesTheArgument() throws {
        let lstm = try OpenCLCellKernels.of(.lstm)
        let tensor = try CPUBackend().zeros([1])

        // No value for an operand the cell's step body reads.
        let missing = Self.values(for: lstm.forward, directions: 2, leaving: ["cellStates"], tensor: tensor)
        let missingDetail = Self.detail { _ = try lstm.forward.arguments(missing, directions: 2) }
        #expect(missingDetail?.contains("'cellStates' has no value") == true, "\(missingDetail ?? "no error")")

        // A float operand given an int.
        var mistyped = Self.values(for: lstm.backward, directions: 1, tensor: tensor)
        mistyped.set("cellClip", .int(1))
        let mistypedDetail = Self.detail { _ = try lstm.backward.arguments(mistyped, directions: 1) }
        #expect(mistypedDetail?.contains("'cellClip' is declared `const float`") == true,
                "\(mistypedDetail ?? "no error")")

        // A per-direction operand given once for both directions.
        var shared = Self.values(for: lstm.forward, directions: 2, leaving: ["hState"], tensor: tensor)
        shared.set("hState", .tensor(tensor))
        let sharedDetail = Self.detail { _ = try lstm.forward.arguments(shared, directions: 2) }
        #expect(sharedDetail?.contains("'hState' takes one value per direction") == true,
                "\(sharedDetail ?? "no error")")

        // A per-direction operand given for the wrong number of directions.
        let wrongCount = Self.values(for: lstm.forward, directions: 1, tensor: tensor)
        let countDetail = Self.detail { _ = try lstm.forward.arguments(wrongCount, directions: 2) }
        #expect(countDetail?.contains("takes 2 values") == true, "\(countDetail ?? "no error")")

        // Setting an operand the kernel does not have.
        var resolved = try lstm.forward.arguments(Self.values(for: lstm.forward, directions: 1, tensor: tensor),
                                                  directions: 1)
        let unknownDetail = Self.detail { try resolved.set("relu", .int(1)) }
        #expect(unknownDetail?.contains("'relu'") == true, "\(unknownDetail ?? "no error")")
    }

    @Test("a step body that uses an operand the description lacks does not build, and the log names it")
    func kernelMismatchFailsToBuild() throws {
        guard let backend = try TestBackends.openCL() else { return }
        let gru = try OpenCLCellKernels.of(.gru)
        // The reset-after GRU's description without the operand its backward step reads for hn.
        let operands = gru.backward.operands.filter { $0.name != "candidateRecurrent" }
        let backward = StepKernelOperands(kernel: gru.backward.kernel, operands: operands)
        let family = KernelFamily(name: "gru-mismatch", files: gru.family.files,
                                  prelude: gru.forward.macros(prefix: "RECUR_FWD") + backward.macros(prefix: "RECUR_BWD"))
        do {
            _ = try backend.program(family)
            Issue.record("a kernel whose body reads an undeclared operand built")
        } catch let error as OpenCLError {
            #expect(error.function == "clBuildProgram")
            #expect(error.buildLog?.contains("candidateRecurrent") == true, "\(error)")
        }
    }
}
