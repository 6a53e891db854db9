// A STAND-IN FOR LuCI, for tests only. LuCI's client runtime (luci.js,
// ui.js, form.js, rpc.js) is not packaged for Debian, so this provides the
// few calls luci-app-leash's views use, with LuCI's names and shapes:
// the `'require x'` module loading, view.extend, rpc.declare (over HTTP to
// the test server, which runs the real rpcd plugin), E(), _(), ui modals
// and notifications, poll.add, and a form.Map that lays out sections and
// options (it does not read or write UCI). It is not LuCI.
(function() {
	'use strict';

	String.prototype.format = function() {
		var args = arguments, i = 0;
		return this.replace(/%[sd]/g, function() { return String(args[i++]); });
	};

	window._ = function(s) { return s; };

	window.E = function(tag, attrs, children) {
		if (Array.isArray(attrs) || typeof attrs == 'string' || attrs instanceof Node) {
			children = attrs;
			attrs = null;
		}
		var el = document.createElement(tag);
		Object.keys(attrs || {}).forEach(function(k) {
			var v = attrs[k];
			if (v == null)
				return;
			if (typeof v == 'function')
				el.addEventListener(k, v);
			else
				el.setAttribute(k, v);
		});
		[].concat(children == null ? [] : children).forEach(function(c) {
			if (c == null)
				return;
			el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
		});
		return el;
	};

	var L = window.L = {
		url: function(path) { return '/cgi-bin/luci/' + path; }
	};

	var view = {
		extend: function(proto) {
			return Object.assign(Object.create({
				load: function() { return null; },
				render: function() { return E('div'); }
			}), proto);
		}
	};

	var rpc = {
		declare: function(d) {
			return function() {
				var args = arguments, params = {};
				(d.params || []).forEach(function(p, i) {
					if (args[i] !== undefined)
						params[p] = args[i];
				});
				return fetch('/ubus', {
					method: 'POST',
					headers: { 'Content-Type': 'application/json' },
					body: JSON.stringify({ object: d.object, method: d.method, params: params })
				}).then(function(r) {
					if (!r.ok)
						throw new Error('RPC call to ' + d.object + '/' + d.method + ' failed with HTTP ' + r.status);
					return r.json();
				}).then(function(reply) {
					// LuCI's `expect`: one key of the reply (its default when
					// missing or of another type), '' for the whole reply.
					var key = d.expect ? Object.keys(d.expect)[0] : null;
					if (key == null || key === '')
						return reply;
					var v = reply[key], dflt = d.expect[key];
					return (v == null || (Array.isArray(dflt) && !Array.isArray(v))) ? dflt : v;
				});
			};
		}
	};

	var ui = {
		addNotification: function(title, node, cls) {
			document.getElementById('notifications').appendChild(E('div', { 'class': 'alert-message ' + (cls || '') }, [ node ]));
		},
		showModal: function(title, children) {
			ui.hideModal();
			document.body.appendChild(E('div', { 'id': 'modal_overlay' }, [
				E('div', { 'class': 'modal' }, [ E('h4', {}, [ title ]) ].concat(children))
			]));
		},
		hideModal: function() {
			var m = document.getElementById('modal_overlay');
			if (m)
				m.remove();
		}
	};

	var poll = {
		add: function(fn, interval) { setInterval(fn, (interval || 5) * 1000); }
	};

	// form: sections and options as fieldsets and labelled inputs, no UCI.
	function Option(type, name, title, description) {
		this.type = type; this.option = name; this.title = title; this.description = description; this.values = [];
	}
	Option.prototype.value = function(v) { this.values.push(v); };
	Option.prototype.render = function() {
		var input;
		if (this.type == 'ListValue')
			input = E('select', {}, this.values.map(function(v) { return E('option', { 'value': v }, [ v ]); }));
		else if (this.type == 'Flag')
			input = E('input', { 'type': 'checkbox' });
		else
			input = E('input', { 'type': this.password ? 'password' : 'text', 'placeholder': this.placeholder || null });
		return E('div', { 'class': 'cbi-value', 'data-option': this.option }, [
			E('label', { 'class': 'cbi-value-title' }, [ this.title ]),
			E('div', { 'class': 'cbi-value-field' }, [ input, this.description ? E('div', { 'class': 'cbi-value-description' }, [ this.description ]) : null ])
		]);
	};
	function Section(type, title) { this.sectiontype = type; this.title = title; this.options = []; }
	Section.prototype.option = function(cls, name, title, description) {
		var o = new Option(cls, name, title, description);
		this.options.push(o);
		return o;
	};
	function Map(config, title, description) { this.config = config; this.title = title; this.description = description; this.sections = []; }
	Map.prototype.section = function(cls, type, title) {
		var s = new Section(type, title);
		this.sections.push(s);
		return s;
	};
	Map.prototype.render = function() {
		return Promise.resolve(E('div', { 'class': 'cbi-map', 'data-config': this.config }, [
			E('h2', {}, [ this.title ]),
			E('div', { 'class': 'cbi-map-descr' }, [ this.description ])
		].concat(this.sections.map(function(s) {
			return E('fieldset', { 'class': 'cbi-section', 'data-sectiontype': s.sectiontype }, [ E('legend', {}, [ s.title ]) ].concat(s.options.map(function(o) { return o.render(); })));
		}))));
	};
	var form = { Map: Map, TypedSection: 'TypedSection', NamedSection: 'NamedSection',
		Value: 'Value', ListValue: 'ListValue', Flag: 'Flag', DynamicList: 'DynamicList' };

	var modules = { view: view, rpc: rpc, ui: ui, poll: poll, form: form };

	// As LuCI does: fetch the view, read its 'require' lines, run it as a
	// function of those modules, then load() and render().
	window.standinLoadView = function(name) {
		return fetch('/luci-static/resources/view/leash/' + name + '.js').then(function(r) { return r.text(); }).then(function(src) {
			var names = [], m, re = /^\s*'require ([\w.]+)';/mg;
			while ((m = re.exec(src)) != null)
				names.push(m[1]);
			var fn = new Function(names.join(','), src);
			var v = fn.apply(null, names.map(function(n) {
				if (!modules[n])
					throw new Error('stand-in lacks module ' + n);
				return modules[n];
			}));
			return Promise.resolve(v.load()).then(function(data) { return v.render(data); });
		}).then(function(node) {
			document.getElementById('maincontent').appendChild(node);
			document.body.setAttribute('data-rendered', name);
		}).catch(function(e) {
			document.getElementById('maincontent').appendChild(E('pre', { 'id': 'view-error' }, [ String(e && e.stack || e) ]));
			document.body.setAttribute('data-rendered', 'error');
		});
	};
})();
