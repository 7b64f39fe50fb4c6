// Lexer for one Containerfile instruction (a logical line: continuations already joined by the
// source reader, which also handles directives, comments and here-document bodies).
//
// Modes follow the instruction's shape: a keyword, then `--flag[=value]` words, then the
// arguments. Keywords are case-insensitive; the 4.7 tool has no caseInsensitive option, hence the
// letter fragments.
lexer grammar ContainerfileLexer;

ADD         : A D D                          -> pushMode(FLAGS);
ARG         : A R G                          -> pushMode(FLAGS);
CMD         : C M D                          -> pushMode(FLAGS);
COPY        : C O P Y                        -> pushMode(FLAGS);
ENTRYPOINT  : E N T R Y P O I N T            -> pushMode(FLAGS);
ENV         : E N V                          -> pushMode(FLAGS);
EXPOSE      : E X P O S E                    -> pushMode(FLAGS);
FROM        : F R O M                        -> pushMode(FLAGS);
HEALTHCHECK : H E A L T H C H E C K          -> pushMode(FLAGS);
LABEL       : L A B E L                      -> pushMode(FLAGS);
MAINTAINER  : M A I N T A I N E R            -> pushMode(FLAGS);
ONBUILD     : O N B U I L D                  -> pushMode(FLAGS);
RUN         : R U N                          -> pushMode(FLAGS);
SHELL       : S H E L L                      -> pushMode(FLAGS);
STOPSIGNAL  : S T O P S I G N A L            -> pushMode(FLAGS);
USER        : U S E R                        -> pushMode(FLAGS);
VOLUME      : V O L U M E                    -> pushMode(FLAGS);
WORKDIR     : W O R K D I R                  -> pushMode(FLAGS);
// Anything else up to the first blank is an unknown instruction; being longer, it also wins over a
// keyword glued to other characters ("RUNX", "COPY[").
UNKNOWN_INSTRUCTION : ~[ \t\f\u000B\r\n]+   -> pushMode(FLAGS);

fragment A : [aA]; fragment B : [bB]; fragment C : [cC]; fragment D : [dD]; fragment E : [eE];
fragment F : [fF]; fragment G : [gG]; fragment H : [hH]; fragment I : [iI]; fragment K : [kK];
fragment L : [lL]; fragment M : [mM]; fragment N : [nN]; fragment O : [oO]; fragment P : [pP];
fragment R : [rR]; fragment S : [sS]; fragment T : [tT]; fragment U : [uU]; fragment V : [vV];
fragment W : [wW]; fragment X : [xX]; fragment Y : [yY];

fragment BLANK : [ \t\f\u000B\r];
LEADING_BLANK : BLANK+ -> skip;

mode FLAGS;
FLAGS_BLANK : BLANK+ -> skip;
// A lone `--` ends the flags (BuildKit's rule); listed before FLAG so it wins the tie.
END_OF_FLAGS : '--' -> mode(ARGUMENTS);
// `--name[=value]`: quotes group blanks into the value, a backslash escapes the next character.
FLAG : '--' FLAG_PIECE+;
// A quote that never closes would swallow the rest of the line; it gets a token of its own so the
// parser can report it instead of guessing.
UNTERMINATED_FLAG : '--' FLAG_PIECE* ( '"' ~["]* | '\'' ~[']* );
fragment FLAG_PIECE
  : ~[ \t\f\u000B\r\n"'\\]
  | '"' ~["]* '"'
  | '\'' ~[']* '\''
  | '\\' .?
  ;
// The first word that is not a flag starts the arguments, which run to the end of the line.
FLAGS_ARGUMENTS
  : ( ( ~[\- \t\f\u000B\r\n] | '-' ~[\-\n] ) ANY_CHAR* | '-' )
    -> type(ARGUMENTS_TEXT), mode(ARGUMENTS)
  ;

mode ARGUMENTS;
ARGUMENTS_BLANK : BLANK+ -> skip;
ARGUMENTS_TEXT : ~[ \t\f\u000B\r] ANY_CHAR*;

fragment ANY_CHAR : ~[\n];
