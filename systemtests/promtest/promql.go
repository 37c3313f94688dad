package promtest

import (
	"fmt"
	"slices"
	"strings"
)

// notMetrics are PromQL's keywords and aggregation operators: an identifier
// that is one of them never names a metric. Functions are told apart by the
// "(" that follows them.
var notMetrics = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "start": true, "end": true, "inf": true, "nan": true,
}

// labelLists are the keywords followed by a parenthesised list of label
// names.
var labelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// MetricNames returns the sorted metric names that the PromQL expression
// expr selects: bare selector names and {__name__="..."} matchers. Grafana's
// variables ($__rate_interval, ${var}, [[var]]) are skipped. It is a lexer,
// not a parser (Prometheus' own parser pulls in much of Prometheus): it
// knows strings, label matchers, ranges, grouping lists, keywords and
// function calls, and reports what it cannot be sure of (a __name__ regex,
// unbalanced brackets) as an error rather than guessing.
func MetricNames(expr string) ([]string, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	var stack []byte // open brackets: '(' '{' '['
	labelList := false
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.kind {
		case tokOpen:
			stack = append(stack, t.text[0])
			if t.text == "(" && i > 0 && toks[i-1].kind == tokIdent && labelLists[strings.ToLower(toks[i-1].text)] {
				labelList = true
			}
		case tokClose:
			want := map[string]byte{")": '(', "}": '{', "]": '['}[t.text]
			if len(stack) == 0 || stack[len(stack)-1] != want {
				return nil, fmt.Errorf("%q: unbalanced %q at offset %d", expr, t.text, t.pos)
			}
			stack = stack[:len(stack)-1]
			if t.text == ")" {
				labelList = false
			}
		case tokIdent:
			top := byte(0)
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			}
			switch {
			case top == '[':
				// A range or subquery: durations only.
			case top == '{':
				if t.text != "__name__" {
					continue
				}
				if i+2 >= len(toks) || toks[i+1].text != "=" || toks[i+2].kind != tokString {
					return nil, fmt.Errorf("%q: only __name__=\"...\" is understood, at offset %d", expr, t.pos)
				}
				names[toks[i+2].text] = true
			case labelList, notMetrics[strings.ToLower(t.text)]:
			case i+1 < len(toks) && toks[i+1].text == "(":
				// A function call.
			default:
				names[t.text] = true
			}
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("%q: %q is never closed", expr, stack[len(stack)-1])
	}
	return slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}), nil
}

type tokKind int

const (
	tokIdent tokKind = iota
	tokString
	tokNumber
	tokOpen
	tokClose
	tokOp
)

type token struct {
	kind tokKind
	text string // a string's value, unquoted
	pos  int
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// lex splits expr into tokens; ranges ([5m], [$__rate_interval], subqueries)
// keep their brackets but lose their contents' meaning: durations and
// variables are neither names nor labels.
func lex(expr string) ([]token, error) {
	var out []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			start := i
			i++
			var b strings.Builder
			for ; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' && c != '`' && i+1 < len(expr) {
					i++
				}
				b.WriteByte(expr[i])
			}
			if i >= len(expr) {
				return nil, fmt.Errorf("%q: string at offset %d is never closed", expr, start)
			}
			i++
			out = append(out, token{tokString, b.String(), start})
		case c == '$':
			// Grafana variables: $name, ${name...}.
			start := i
			i++
			if i < len(expr) && expr[i] == '{' {
				for i < len(expr) && expr[i] != '}' {
					i++
				}
				if i >= len(expr) {
					return nil, fmt.Errorf("%q: variable at offset %d is never closed", expr, start)
				}
				i++
			} else {
				for i < len(expr) && isIdent(expr[i]) {
					i++
				}
			}
			out = append(out, token{tokNumber, expr[start:i], start})
		case c == '[' && strings.HasPrefix(expr[i:], "[[") && i+2 < len(expr) && isIdentStart(expr[i+2]):
			// Grafana's old [[name]] variables.
			end := strings.Index(expr[i:], "]]")
			if end < 0 {
				return nil, fmt.Errorf("%q: variable at offset %d is never closed", expr, i)
			}
			out = append(out, token{tokNumber, expr[i : i+end+2], i})
			i += end + 2
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			// Numbers, durations (5m, 1h30m), hex and exponents (1e-3).
			start := i
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				if (expr[i] == 'e' || expr[i] == 'E') && i+1 < len(expr) && (expr[i+1] == '+' || expr[i+1] == '-') &&
					!strings.HasPrefix(strings.ToLower(expr[start:]), "0x") {
					i++
				}
				i++
			}
			out = append(out, token{tokNumber, expr[start:i], start})
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			out = append(out, token{tokIdent, expr[start:i], start})
		case c == '(' || c == '{' || c == '[':
			out = append(out, token{tokOpen, string(c), i})
			i++
		case c == ')' || c == '}' || c == ']':
			out = append(out, token{tokClose, string(c), i})
			i++
		default:
			// Operators: one or two characters (==, !=, >=, <=, =~, !~).
			start := i
			i++
			if i < len(expr) && strings.ContainsRune("=~", rune(expr[i])) && strings.ContainsRune("=!<>", rune(c)) {
				i++
			}
			out = append(out, token{tokOp, expr[start:i], start})
		}
	}
	return out, nil
}
