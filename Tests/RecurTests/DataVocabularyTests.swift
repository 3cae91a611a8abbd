import Testing
@testable import Recur

/// Vocabulary and tokenizers against Keras `Tokenizer(oov_token="<OOV>")` and
/// `text_to_word_sequence`, with the expected values worked out by hand below.
@Suite struct DataVocabularyTests {
    /// Word counts in first-appearance order: the 3, cat 3, sat 1, on 1, mat 1, dog 2, ate 1,
    /// my 1, homework 1. Keras sorts by count, stably, so equal counts keep that order:
    /// the, cat, dog, sat, on, mat, ate, my, homework get ids 2…10 after <OOV> at 1.
    static let texts = ["The cat sat on the mat.", "The dog ate my homework!", "cat, dog; cat"]

    @Test func wordTokenizerFollowsKerasTextToWordSequence() {
        let tokenizer = WordTokenizer()
        #expect(tokenizer.tokens(in: "The cat sat on the mat.") == ["the", "cat", "sat", "on", "the", "mat"])
        // Every default filter separates; the apostrophe is not a filter.
        #expect(tokenizer.tokens(in: "Hello,World!It's(great)\tdon't-stop\n\"now\"") ==
                ["hello", "world", "it's", "great", "don't", "stop", "now"])
        #expect(tokenizer.tokens(in: "  ...  ") == [])
        #expect(tokenizer.tokens(in: "") == [])
        #expect(tokenizer.tokens(in: "ÉCOLE Straße") == ["école", "straße"])
    }

    @Test func wordTokenizerSplitsOnAnyWhitespaceAndLineBreakTags() {
        let tokenizer = WordTokenizer()
        #expect(tokenizer.tokens(in: "one\r\ntwo\u{00A0}three") == ["one", "two", "three"])
        #expect(tokenizer.tokens(in: "End.<br /><br />Next<BR>line<br/>x") == ["end", "next", "line", "x"])
        // Keras's own behaviour: the tag's punctuation is filtered and "br" is left as a word.
        let keras = WordTokenizer(removesLineBreakTags: false)
        #expect(keras.tokens(in: "End.<br /><br />Next") == ["end", "br", "br", "next"])
        // Not a line break tag: filtered as ordinary punctuation.
        #expect(tokenizer.tokens(in: "a<b>c <brx>") == ["a", "b", "c", "brx"])
    }

    @Test func wordTokenizerOptions() {
        let tokenizer = WordTokenizer(lowercases: false, filters: ".")
        #expect(tokenizer.tokens(in: "Keep,Case. here") == ["Keep,Case", "here"])
    }

    @Test func characterTokenizerKeepsEveryScalar() {
        #expect(CharacterTokenizer().tokens(in: "Ab c\n") == ["A", "b", " ", "c", "\n"])
        #expect(CharacterTokenizer(lowercases: true).tokens(in: "Ab") == ["a", "b"])
        // Unicode scalars, not grapheme clusters: CRLF and a combining accent are two tokens each.
        #expect(CharacterTokenizer().tokens(in: "\r\ne\u{301}") == ["\r", "\n", "e", "\u{301}"])
    }

    @Test func fittingOrdersByCountThenFirstAppearance() throws {
        let vocabulary = try Vocabulary(fittingTexts: Self.texts, tokenizer: WordTokenizer())
        #expect(vocabulary.tokens == ["", "<OOV>", "the", "cat", "dog", "sat", "on", "mat", "ate", "my", "homework"])
        #expect(vocabulary.count == 11)
        #expect(vocabulary.id(of: "the") == 2)
        #expect(vocabulary.id(of: "dog") == 4)
        #expect(vocabulary.id(of: "fish") == Vocabulary.outOfVocabularyID)
        // Keras texts_to_sequences(["the cat ate a fish"]) == [[2, 3, 8, 1, 1]].
        #expect(vocabulary.encode("the cat ate a fish", tokenizer: WordTokenizer()) == [2, 3, 8, 1, 1])
    }

    @Test func numWordsKeepsIdsBelowIt() throws {
        // Keras num_words=5 keeps ids 0…4: padding, <OOV>, the, cat, dog.
        let vocabulary = try Vocabulary(fittingTexts: Self.texts, tokenizer: WordTokenizer(), numWords: 5)
        #expect(vocabulary.tokens == ["", "<OOV>", "the", "cat", "dog"])
        #expect(vocabulary.count == 5)
        #expect(vocabulary.encode(texts: ["the cat ate a fish", "dog sat"], tokenizer: WordTokenizer()) ==
                [[2, 3, 1, 1, 1], [4, 1]])
        // More room than words keeps them all.
        #expect(try Vocabulary(fittingTexts: Self.texts, tokenizer: WordTokenizer(), numWords: 100).count == 11)
        #expect(try Vocabulary(fittingTexts: Self.texts, tokenizer: WordTokenizer(), numWords: 2).count == 2)
        let error = recurError { _ = try Vocabulary(fitting: [["a"]], numWords: 1) }
        guard case .invalidArgument = error else { Issue.record("expected invalidArgument, got \(String(describing: error))"); return }
    }

    @Test func fittingIgnoresEmptyAndOutOfVocabularyTokens() throws {
        let vocabulary = try Vocabulary(fitting: [["b", "", "<OOV>", "a", "b"]])
        #expect(Array(vocabulary.words) == ["b", "a"])
    }

    @Test func decodeSkipsPaddingAndRejectsUnknownIds() throws {
        let vocabulary = try Vocabulary(words: ["the", "cat"])
        #expect(try vocabulary.decode([0, 0, 2, 3, 1]) == ["the", "cat", "<OOV>"])
        let error = recurError { _ = try vocabulary.decode([4]) }
        #expect(error?.description.contains("id 4") == true)
        #expect(recurError { _ = try vocabulary.decode([-1]) } != nil)
    }

    @Test func wordsMustBeDistinctAndNonEmpty() {
        #expect(recurError { _ = try Vocabulary(words: ["a", "a"]) } != nil)
        #expect(recurError { _ = try Vocabulary(words: [""]) } != nil)
        #expect(recurError { _ = try Vocabulary(words: ["<OOV>"]) } != nil)
    }

    @Test func serialisationRoundTripsAwkwardTokens() throws {
        let vocabulary = try Vocabulary(words: ["\n", " ", "\"", "\\", "é", "\t", "—", "<br>"])
        let text = vocabulary.serialized
        #expect(text.hasPrefix(#"["","<OOV>","\n"," ","\"","\\""#))
        #expect(try Vocabulary(serialized: text) == vocabulary)
        #expect(try Vocabulary(serialized: "[\"\",\"<OOV>\"]").count == 2)
    }

    @Test func serialisedFormIsChecked() {
        for bad in ["", "{}", "[1]", #"["<OOV>",""]"#, #"["","<OOV>","a","a"]"#, #"["","<OOV>""#] {
            let error = recurError { _ = try Vocabulary(serialized: bad) }
            guard case .malformed? = error else {
                Issue.record("'\(bad)': expected malformed, got \(String(describing: error))")
                continue
            }
        }
    }
}
