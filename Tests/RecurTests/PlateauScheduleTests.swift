import Testing
@testable import Recur

// The reduce-on-plateau schedule: reductions on a scripted sequence of epochs, the trainer's rate
// following it, and a resumed run equal to an uninterrupted one.

@Suite("Plateau schedule")
struct PlateauScheduleTests {
    @Test func theRateFallsExactlyAfterPatienceEpochsWithoutImprovement() {
        let plateau = ReduceOnPlateau(factor: 0.5, patience: 2, minimum: 0.2)
        // Improved?   yes    no     no      no     no      yes    no     no      no     no
        // Count:      0      1      0 (cut) 1      0 (cut) 0      1      2 (at minimum, no cut) 3
        let script = [true, false, false, false, false, true, false, false, false, false]
        var (rate, count): (Float, Int) = (1, 0)
        var rates: [Float] = []
        var counts: [Int] = []
        for improved in script {
            (rate, count) = plateau.next(rate: rate, epochsWithoutImprovement: count, improved: improved)
            rates.append(rate)
            counts.append(count)
        }
        #expect(rates == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2])
        #expect(counts == [0, 1, 0, 1, 0, 0, 1, 0, 1, 2])
        #expect(ReduceOnPlateau().next(rate: 1e-3, epochsWithoutImprovement: 1, improved: false).rate == Float(1e-3) * 0.1)
    }

    @Test func badPlateauSettingsAreRefused() {
        for plateau in [ReduceOnPlateau(factor: 1), ReduceOnPlateau(factor: 0), ReduceOnPlateau(patience: 0),
                        ReduceOnPlateau(minimum: -1)] {
            #expect(throws: RecurError.self) { try plateau.validate() }
        }
        var configuration = markerConfiguration(epochs: 2)
        configuration.plateau = ReduceOnPlateau()
        configuration.schedule = .constant(0.1)
        #expect(throws: RecurError.self) { try configuration.validate() }
    }

    @Test func theTrainerFollowsTheScheduleAndResumesExactly() throws {
        let training = try markerExamples(count: 100, vocabulary: 12, steps: 6, seed: 3)
        let validation = try markerExamples(count: 40, vocabulary: 12, steps: 6, seed: 4)
        let folder = try TemporaryFolder()
        var configuration = markerConfiguration(epochs: 6)
        configuration.optimizer = .adam(learningRate: 0.2)  // large: the validation loss stalls early
        configuration.plateau = ReduceOnPlateau(factor: 0.5, patience: 1)
        configuration.checkpointEverySteps = 4  // 7 batches per epoch: checkpoints fall mid-epoch

        let straight = try Trainer(specification: markerSpecification, configuration: configuration,
                                   backend: TestBackends.cpu)
        let expected = try straight.fit(training: training, validation: validation)
        // Each epoch's rate is the rate the record of the epoch before implies.
        var rate: Float = 0.2
        var count = 0
        var best = Double.infinity
        for record in expected {
            #expect(record.learningRate == Double(rate), "epoch \(record.epoch)")
            let value = record.metrics["val_loss"]!
            (rate, count) = configuration.plateau!.next(rate: rate, epochsWithoutImprovement: count, improved: value < best)
            best = min(best, value)
        }
        let reductions = Set(expected.map(\.learningRate)).count - 1
        #expect(reductions >= 1 && expected[3].learningRate < 0.2, "rates \(expected.map(\.learningRate))")

        // Stop after 26 steps (epoch 4), resume from the step-24 checkpoint.
        let checkpoint = try checkpointOfARunStopped(
            afterSteps: 26, specification: markerSpecification, configuration: configuration, training: training,
            validation: validation, folder: folder)
        #expect(checkpoint.progress.step == 24 && checkpoint.progress.epoch == 3)
        let resumed = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu)
        let history = try resumed.fit(training: training, validation: validation)
        #expect(history == expected.map { record in
            var copy = record
            copy.seconds = history[record.epoch - 1].seconds
            copy.liveBuffers = history[record.epoch - 1].liveBuffers
            copy.liveBytes = history[record.epoch - 1].liveBytes
            return copy
        })
        #expect(resumed.progress.plateauLearningRate == straight.progress.plateauLearningRate)
        for (got, want) in zip(resumed.model.parameters, straight.model.parameters) {
            #expect(try got.value.toArray() == want.value.toArray(), "\(got.name) differs after resuming")
        }
    }
}
