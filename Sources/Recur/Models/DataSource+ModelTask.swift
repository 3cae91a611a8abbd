// What the data sets mean for a model: the task a data format serves, and the width of the head
// that fits prepared data. Declared with the model's task, above the data sets, so Data needs
// nothing from Models.

extension DataSource {
    /// The task each format serves.
    public var task: ModelTask {
        switch format {
        case .tsv, .csv, .lines, .imdb: .classify
        case .text: .lm
        case .series: .forecast
        case .tagged: .tag
        }
    }
}

extension PreparedData {
    /// What a model for this data outputs: one logit for two classes, else one per class, tag or
    /// vocabulary id; the horizon times the target columns for series.
    public func outputSize(for task: ModelTask, horizon: Int) -> Int {
        switch task {
        case .classify: classNames.count == 2 ? 1 : classNames.count
        case .tag: tagVocabulary?.count ?? classNames.count
        case .lm: vocabulary?.count ?? 0
        case .forecast: horizon * targetCount
        }
    }
}
